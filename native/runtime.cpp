#include "runtime.h"

#include <dlfcn.h>
#include <unistd.h>
#include <limits.h>
#include <stdlib.h>

#include <cstdlib>
#include <mutex>

#include "errors.h"

namespace streamproc {
namespace {

constexpr const char* kSdkLibDir = "/opt/sophon/libsophon-current/lib";

std::mutex g_mutex;
std::shared_ptr<const Runtime> g_runtime;
std::string g_requested_dir;

std::string resolved_path(void* library, const char* symbol, const std::string& fallback) {
  Dl_info info{};
  void* address = dlsym(library, symbol);
  if (address && dladdr(address, &info) && info.dli_fname) return info.dli_fname;
  return fallback;
}

template <typename Fn>
void resolve(void* library, const char* name, Fn& slot, const std::string& where) {
  slot = reinterpret_cast<Fn>(dlsym(library, name));
  if (!slot) throw RuntimeNotFound(where + " has no symbol " + name + " (is this a Sophgo runtime?)");
}

// Tries to open libbmlib and libbmrt from `dir` ("" = the loader's own search).
bool try_open(const std::string& dir, Runtime& rt, void*& bmlib, void*& bmrt) {
  const std::string prefix = dir.empty() ? "" : dir + "/";
  const char* bmlib_names[] = {"libbmlib.so.0", "libbmlib.so"};
  const char* bmrt_names[] = {"libbmrt.so.1.0", "libbmrt.so"};
  bmlib = nullptr;
  bmrt = nullptr;
  // libbmlib first and RTLD_GLOBAL, so libbmrt's dependency on it resolves to this copy.
  for (const char* name : bmlib_names) {
    rt.tried.push_back(prefix + name);
    bmlib = dlopen((prefix + name).c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (bmlib) break;
  }
  if (!bmlib) return false;
  for (const char* name : bmrt_names) {
    rt.tried.push_back(prefix + name);
    bmrt = dlopen((prefix + name).c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (bmrt) break;
  }
  return bmrt != nullptr;
}

// The folder as the file system resolves it ("" stays ""), so that "dir", "dir/" and a link
// to it name the same runtime.
std::string canonical_dir(const std::string& dir) {
  if (dir.empty()) return dir;
  char* resolved = realpath(dir.c_str(), nullptr);
  if (!resolved) return dir;
  std::string out(resolved);
  std::free(resolved);
  return out;
}

std::shared_ptr<const Runtime> open_runtime(const std::string& requested) {
  auto rt = std::make_shared<Runtime>();
  std::vector<std::string> dirs;
  if (!requested.empty()) {
    dirs.push_back(requested);  // explicit: no fallback, the user asked for this one
  } else {
    dirs.push_back("");
    dirs.push_back(kSdkLibDir);
  }
  void* bmlib = nullptr;
  void* bmrt = nullptr;
  std::string last_error;
  for (const auto& dir : dirs) {
    if (try_open(dir, *rt, bmlib, bmrt)) break;
    const char* error = dlerror();
    if (error) last_error = error;
  }
  if (!bmlib || !bmrt) {
    std::string message = "Sophgo runtime (libbmrt, libbmlib) not found; looked for";
    for (const auto& path : rt->tried) message += " " + path;
    if (!last_error.empty()) message += " (last error: " + last_error + ")";
    message +=
        ". Install libsophon, or set STREAMPROC_BMRT_DIR / backend.runtime_dir to a folder with "
        "libbmrt.so (for the CPU simulator: tools/bmodel/fetch_runtime.sh)";
    throw RuntimeNotFound(message);
  }
  rt->bmlib_path = resolved_path(bmlib, "bm_dev_request", "libbmlib");
  rt->bmrt_path = resolved_path(bmrt, "bmrt_create", "libbmrt");
  // libbmlib loads the simulator from libcmodel.so in its own folder (tools/bmodel/fetch_runtime.sh).
  const size_t slash = rt->bmlib_path.rfind('/');
  if (slash != std::string::npos)
    rt->simulator = access((rt->bmlib_path.substr(0, slash) + "/libcmodel.so").c_str(), F_OK) == 0;
  const std::string& lib = rt->bmlib_path;
  resolve(bmlib, "bm_dev_getcount", rt->dev_getcount, lib);
  resolve(bmlib, "bm_dev_request", rt->dev_request, lib);
  resolve(bmlib, "bm_dev_free", rt->dev_free, lib);
  resolve(bmlib, "bm_malloc_device_byte", rt->malloc_device_byte, lib);
  resolve(bmlib, "bm_free_device", rt->free_device, lib);
  resolve(bmlib, "bm_memcpy_s2d_partial_offset", rt->memcpy_s2d_partial_offset, lib);
  resolve(bmlib, "bm_memcpy_d2s_partial_offset", rt->memcpy_d2s_partial_offset, lib);
  resolve(bmlib, "bm_memcpy_d2d_byte", rt->memcpy_d2d_byte, lib);
  resolve(bmlib, "bm_thread_sync", rt->thread_sync, lib);
  resolve(bmlib, "bm_get_chipid", rt->get_chipid, lib);
  const std::string& rtlib = rt->bmrt_path;
  resolve(bmrt, "bmrt_create", rt->rt_create, rtlib);
  resolve(bmrt, "bmrt_destroy", rt->rt_destroy, rtlib);
  resolve(bmrt, "bmrt_get_flags", rt->rt_get_flags, rtlib);
  resolve(bmrt, "bmrt_set_flags", rt->rt_set_flags, rtlib);
  resolve(bmrt, "bmrt_load_bmodel", rt->rt_load_bmodel, rtlib);
  resolve(bmrt, "bmrt_get_network_number", rt->rt_get_network_number, rtlib);
  resolve(bmrt, "bmrt_get_network_names", rt->rt_get_network_names, rtlib);
  resolve(bmrt, "bmrt_get_network_info", rt->rt_get_network_info, rtlib);
  resolve(bmrt, "bmrt_launch_tensor_ex", rt->rt_launch_tensor_ex, rtlib);
  return rt;
}

}  // namespace

std::shared_ptr<const Runtime> Runtime::get(const std::string& runtime_dir) {
  std::string requested = runtime_dir;
  if (requested.empty()) {
    const char* env = std::getenv("STREAMPROC_BMRT_DIR");
    if (env) requested = env;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_runtime) {
    if (!requested.empty() && canonical_dir(requested) != canonical_dir(g_requested_dir)) {
      throw RuntimeNotFound("the Sophgo runtime is already loaded from " + g_runtime->bmrt_path +
                            "; one process cannot also load " + requested);
    }
    return g_runtime;
  }
  g_runtime = open_runtime(requested);
  g_requested_dir = requested;
  return g_runtime;
}

int Runtime::device_count() const {
  int count = 0;
  return dev_getcount(&count) == bm::kSuccess && count > 0 ? count : 0;
}

std::shared_ptr<const Runtime> Runtime::loaded() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_runtime;
}

}  // namespace streamproc
