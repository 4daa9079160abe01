// Exceptions the engine throws. bindings.cpp maps each to a Python exception class, and the
// Python backend maps those to streamproc.errors (whose `retryable` says whether to retry).
#pragma once

#include <stdexcept>
#include <string>

namespace streamproc {

// libbmrt / libbmlib could not be found or lack a symbol we need.
struct RuntimeNotFound : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The bmodel is missing, unreadable, truncated, for another chip, or not a Qwen2.5-VL bmodel.
struct BmodelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The input does not fit the bmodel (sequence length, MAX_INPUT, MAX_PATCHES) or is malformed.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A device call failed (memory allocation, copy, launch).
struct DeviceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Engine::abort() stopped the call (between net launches); the history is as before the call.
struct Aborted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace streamproc
