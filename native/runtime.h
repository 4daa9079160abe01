// The Sophgo runtime libraries, opened once per process with dlopen.
//
// Search order (the first that loads wins): an explicit folder (Engine's runtime_dir argument,
// else $STREAMPROC_BMRT_DIR), then the dynamic loader's own search for the bare soname
// (LD_LIBRARY_PATH, ldconfig), then the SDK's /opt/sophon/libsophon-current/lib.
// Thread safety: Runtime::get is safe from any thread; the loaded function table is read-only.
// The libraries are never unloaded: libbmrt's static destructors must not outlive our engines,
// and the engines are freed (by Python's atexit) before the process ends.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bmrt_api.h"

namespace streamproc {

struct Runtime {
  std::string bmrt_path;   // the libbmrt that was loaded, as the loader resolved it
  std::string bmlib_path;
  std::vector<std::string> tried;  // where we looked, for error messages
  bool simulator = false;  // libbmlib drives the CPU simulator (a libcmodel.so beside it)

  bm::DevGetCountFn dev_getcount = nullptr;
  bm::DevRequestFn dev_request = nullptr;
  bm::DevFreeFn dev_free = nullptr;
  bm::MallocDeviceByteFn malloc_device_byte = nullptr;
  bm::FreeDeviceFn free_device = nullptr;
  bm::MemcpyS2DPartialOffsetFn memcpy_s2d_partial_offset = nullptr;
  bm::MemcpyD2SPartialOffsetFn memcpy_d2s_partial_offset = nullptr;
  bm::MemcpyD2DByteFn memcpy_d2d_byte = nullptr;
  bm::ThreadSyncFn thread_sync = nullptr;
  bm::GetChipIdFn get_chipid = nullptr;

  bm::RtCreateFn rt_create = nullptr;
  bm::RtDestroyFn rt_destroy = nullptr;
  bm::RtGetFlagsFn rt_get_flags = nullptr;
  bm::RtSetFlagsFn rt_set_flags = nullptr;
  bm::RtLoadBmodelFn rt_load_bmodel = nullptr;
  bm::RtGetNetworkNumberFn rt_get_network_number = nullptr;
  bm::RtGetNetworkNamesFn rt_get_network_names = nullptr;
  bm::RtGetNetworkInfoFn rt_get_network_info = nullptr;
  bm::RtLaunchTensorExFn rt_launch_tensor_ex = nullptr;

  // TPU devices the runtime sees (the CPU simulator: 1); 0 when it cannot tell. Thread-safe.
  int device_count() const;
  // Loads the runtime on first use. A later call asking for another folder than the one
  // loaded fails: one process holds one runtime. Throws RuntimeNotFound.
  static std::shared_ptr<const Runtime> get(const std::string& runtime_dir);
  // The runtime loaded so far, or null.
  static std::shared_ptr<const Runtime> loaded();
};

}  // namespace streamproc
