#include "masks.h"

#include <algorithm>

namespace streamproc {

std::vector<float> vit_block_mask(const std::vector<int32_t>& cu_seqlens, int size) {
  std::vector<float> mask(static_cast<size_t>(size) * size, kVitMaskValue);
  for (size_t i = 0; i + 1 < cu_seqlens.size(); ++i) {
    const int begin = cu_seqlens[i];
    const int end = std::min(cu_seqlens[i + 1], size);
    for (int row = begin; row < end; ++row) {
      float* line = mask.data() + static_cast<size_t>(row) * size;
      std::fill(line + begin, line + end, 0.0f);
    }
  }
  return mask;
}

std::vector<uint16_t> prefill_mask(int rows, int real_rows, int history_columns, int history, uint16_t masked) {
  const int columns = history_columns + rows;
  std::vector<uint16_t> mask(static_cast<size_t>(rows) * columns, masked);
  for (int row = 0; row < real_rows; ++row) {
    uint16_t* line = mask.data() + static_cast<size_t>(row) * columns;
    std::fill(line, line + history, static_cast<uint16_t>(0));
    std::fill(line + history_columns, line + history_columns + row + 1, static_cast<uint16_t>(0));
  }
  return mask;
}

std::vector<uint16_t> decode_mask(int columns, int history, uint16_t masked) {
  std::vector<uint16_t> mask(static_cast<size_t>(columns) + 1, masked);
  std::fill(mask.begin(), mask.begin() + history, static_cast<uint16_t>(0));
  mask[columns] = 0;
  return mask;
}

}  // namespace streamproc
