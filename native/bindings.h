// pybind11 module streamproc._native: the Python face of the native engine, split by concern:
//   bind_module.cpp   the module, its exceptions and runtime functions (load, devices, ABI);
//   bind_values.cpp   plain values: SamplingParams, ModelInfo, StepTimes;
//   bind_chunk.cpp    VisionChunk, the typed vision input (vision_chunk.h);
//   bind_engine.cpp   Engine: lifecycle, history, and the prefill / decode / generate calls.
// It knows tensors and token ids only; video, prompts and MQTT live in Python. Device work runs
// with the GIL released, so other Python threads (other streams) keep going.
//
// Errors are the return codes: every call either returns its value or raises one of
//   NativeError (base) > RuntimeNotFoundError  libbmrt / libbmlib not found or incomplete
//                      > BmodelError           the bmodel is missing, damaged, for another chip, not a Qwen VL model
//                      > InputError            the input does not fit or is malformed (nothing changed)
//                      > DeviceError           a device call failed, or the device does not exist
//                      > AbortedError          Engine.abort() stopped the call (history as before it)
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "errors.h"

namespace streamproc {
namespace py = pybind11;

void bind_runtime(py::module_& m);
void bind_values(py::module_& m);
void bind_chunk(py::module_& m);
void bind_engine(py::module_& m);

// "name=repr(value)" for __repr__ methods.
template <typename T>
std::string field(const char* name, const T& value) {
  return std::string(name) + "=" + static_cast<std::string>(py::repr(py::cast(value)));
}

// A C-contiguous copy of a numeric array (converted to T), checked for its element count.
template <typename T>
std::vector<T> to_vector(const py::handle& value, const char* what, size_t expected_size = 0) {
  auto array = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(value);
  if (!array) throw InputError(std::string(what) + " must be a numeric array");
  std::vector<T> out(array.data(), array.data() + array.size());
  if (expected_size && out.size() != expected_size)
    throw InputError(std::string(what) + " has " + std::to_string(out.size()) + " values, expected " +
                     std::to_string(expected_size));
  return out;
}

}  // namespace streamproc
