// The module: exceptions, version and ABI, runtime loading and devices (see bindings.h).
#include "bindings.h"

#include "engine.h"
#include "masks.h"
#include "runtime.h"

#ifndef STREAMPROC_NATIVE_VERSION
#define STREAMPROC_NATIVE_VERSION "0.2.0"
#endif

namespace streamproc {

namespace {

py::dict abi_sizes() {
  py::dict out;
  out["device_mem"] = sizeof(bm::DeviceMem);
  out["shape"] = sizeof(bm::Shape);
  out["tensor"] = sizeof(bm::Tensor);
  out["tensor.shape"] = offsetof(bm::Tensor, shape);
  out["tensor.device_mem"] = offsetof(bm::Tensor, device_mem);
  out["tensor.st_mode"] = offsetof(bm::Tensor, st_mode);
  return out;
}

std::shared_ptr<const Runtime> runtime_for(const std::string& runtime_dir) {
  py::gil_scoped_release release;
  return Runtime::get(runtime_dir);
}

}  // namespace

void bind_runtime(py::module_& m) {
  auto base = py::register_exception<std::runtime_error>(m, "NativeError");
  py::register_exception<RuntimeNotFound>(m, "RuntimeNotFoundError", base.ptr());
  py::register_exception<BmodelError>(m, "BmodelError", base.ptr());
  py::register_exception<InputError>(m, "InputError", base.ptr());
  py::register_exception<DeviceError>(m, "DeviceError", base.ptr());
  py::register_exception<Aborted>(m, "AbortedError", base.ptr());

  m.def("version", [] { return std::string(STREAMPROC_NATIVE_VERSION); }, "Version of the native extension.");
  m.def("abi_sizes", &abi_sizes, "Sizes and offsets of the runtime structs as this build declares them.");
  m.def("load_runtime", [](const std::string& runtime_dir) { return runtime_for(runtime_dir)->bmrt_path; },
        py::arg("runtime_dir") = "",
        "Load libbmrt (explicit folder, $STREAMPROC_BMRT_DIR, loader path, SDK); returns its path. Raises "
        "RuntimeNotFoundError. Thread-safe; one runtime per process.");
  m.def("runtime_path", [] {
    auto rt = Runtime::loaded();
    return rt ? py::cast(rt->bmrt_path) : py::none();
  }, "Path of the libbmrt loaded in this process, or None.");
  m.def("device_count", [](const std::string& runtime_dir) { return runtime_for(runtime_dir)->device_count(); },
        py::arg("runtime_dir") = "",
        "TPU devices the runtime sees (loading it first, as load_runtime); the CPU simulator has 1. Valid ids are "
        "0..count-1: Engine refuses others with DeviceError instead of letting libbmlib abort the process.");
  m.def("vit_block_mask", [](const std::vector<int32_t>& cu_seqlens, int size) {
    auto mask = vit_block_mask(cu_seqlens, size);
    py::array_t<float> out({size, size});
    std::copy(mask.begin(), mask.end(), out.mutable_data());
    return out;
  }, py::arg("cu_seqlens"), py::arg("size"), "The ViT attention mask the engine builds (for tests).");
}

}  // namespace streamproc

PYBIND11_MODULE(_native, m) {
  m.doc() = "streamproc native engine (Sophgo libbmrt loaded at run time with dlopen); see native/bindings.h";
  streamproc::bind_runtime(m);
  streamproc::bind_values(m);
  streamproc::bind_chunk(m);
  streamproc::bind_engine(m);
}
