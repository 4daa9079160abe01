// Our own declarations of the small part of Sophgo's libbmlib / libbmrt C ABI that the engine
// uses. Nothing here comes from the SDK headers: the layouts are pinned to the runtime we test
// (tpu_mlir 1.30.2's libbmrt, the same ABI as libsophon's runtime) and checked by
// `streamproc._native.abi_sizes()` in the tests. The libraries are opened with dlopen at run
// time (see runtime.h), so the package builds and imports on machines without the SDK.
#pragma once

#include <cstddef>
#include <cstdint>

namespace streamproc {
namespace bm {

using Handle = void*;  // bm_handle_t: an opaque device context
using Status = int;    // bm_status_t: 0 means success
constexpr Status kSuccess = 0;

// bm_device_mem_t, 24 bytes on 64-bit Linux.
struct DeviceMem {
  uint64_t device_addr;
  uint32_t reserved;
  int32_t dmabuf_fd;
  uint32_t flags;
  uint32_t size;
};
static_assert(sizeof(DeviceMem) == 24, "bm_device_mem_t layout");

enum DataType : int32_t {
  kFloat32 = 0,
  kFloat16 = 1,
  kInt8 = 2,
  kUint8 = 3,
  kInt16 = 4,
  kUint16 = 5,
  kInt32 = 6,
  kUint32 = 7,
  kBFloat16 = 8,
};

constexpr int kMaxDims = 8;
struct Shape {  // bm_shape_t, 36 bytes
  int32_t num_dims;
  int32_t dims[kMaxDims];
};
static_assert(sizeof(Shape) == 36, "bm_shape_t layout");

struct Tensor {  // bm_tensor_t, 72 bytes: dtype @0, shape @4, device_mem @40, st_mode @64
  int32_t dtype;
  Shape shape;
  DeviceMem device_mem;
  int32_t st_mode;
};
static_assert(sizeof(Tensor) == 72, "bm_tensor_t layout");

struct StageInfo {  // bm_stage_info_t
  Shape* input_shapes;
  Shape* output_shapes;
  DeviceMem* input_mems;
  DeviceMem* output_mems;
};

struct NetInfo {  // bm_net_info_t
  const char* name;
  bool is_dynamic;
  int32_t input_num;
  const char** input_names;
  int32_t* input_dtypes;
  float* input_scales;
  int32_t output_num;
  const char** output_names;
  int32_t* output_dtypes;
  float* output_scales;
  int32_t stage_num;
  StageInfo* stages;
  size_t* max_input_bytes;
  size_t* max_output_bytes;
  int32_t* input_zero_point;
  int32_t* output_zero_point;
  int32_t* input_loc_devices;
  int32_t* output_loc_devices;
  int32_t core_num;
  int32_t addr_mode;
};

// Function types, named after the C symbols they are resolved from.
using DevGetCountFn = Status (*)(int*);
using DevRequestFn = Status (*)(Handle*, int);
using DevFreeFn = void (*)(Handle);
using MallocDeviceByteFn = Status (*)(Handle, DeviceMem*, unsigned int);
using FreeDeviceFn = void (*)(Handle, DeviceMem);
using MemcpyS2DPartialOffsetFn = Status (*)(Handle, DeviceMem, void*, unsigned int, unsigned int);
using MemcpyD2SPartialOffsetFn = Status (*)(Handle, void*, DeviceMem, unsigned int, unsigned int);
using MemcpyD2DByteFn = Status (*)(Handle, DeviceMem, size_t, DeviceMem, size_t, size_t);
using ThreadSyncFn = Status (*)(Handle);
using GetChipIdFn = Status (*)(Handle, unsigned int*);

using RtCreateFn = void* (*)(Handle);
using RtDestroyFn = void (*)(void*);
using RtGetFlagsFn = uint32_t (*)(void*);
using RtSetFlagsFn = void (*)(void*, uint32_t);
constexpr uint32_t kShareMem = 1;  // BM_RUNTIME_SHARE_MEM
using RtLoadBmodelFn = bool (*)(void*, const char*);
using RtGetNetworkNumberFn = int (*)(void*);
using RtGetNetworkNamesFn = void (*)(void*, const char***);
using RtGetNetworkInfoFn = const NetInfo* (*)(void*, const char*);
using RtLaunchTensorExFn = bool (*)(void*, const char*, const Tensor*, int, Tensor*, int, bool, bool);

}  // namespace bm
}  // namespace streamproc
