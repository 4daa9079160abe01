// Checks on a bmodel file made before libbmrt sees it, so a missing, truncated or foreign file
// gives a clear error instead of a crash inside the runtime.
#pragma once

#include <string>

namespace streamproc {

struct BmodelFile {
  std::string chip;  // e.g. "BM1684X", "BM1688"; empty if not recognised
  size_t bytes = 0;
};

// Throws BmodelError naming the problem.
BmodelFile check_bmodel_file(const std::string& path);

}  // namespace streamproc
