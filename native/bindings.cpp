// pybind11 module streamproc._native: the Python face of the native engine.
// It knows tensors and token ids only; video, prompts and MQTT live in Python.
#include <pybind11/pybind11.h>

namespace py = pybind11;

#ifndef STREAMPROC_NATIVE_VERSION
#define STREAMPROC_NATIVE_VERSION "0.1.0"
#endif

PYBIND11_MODULE(_native, m) {
  m.doc() = "streamproc native engine (Sophgo libbmrt loaded at run time with dlopen)";
  m.def("version", [] { return std::string(STREAMPROC_NATIVE_VERSION); },
        "Version of the native extension.");
}
