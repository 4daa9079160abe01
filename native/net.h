// Device memory and one network of a loaded bmodel: its shapes, dtypes and own I/O memory,
// and launching it.
#pragma once

#include <string>
#include <vector>

#include "bmrt_api.h"
#include "runtime.h"

namespace streamproc {

size_t dtype_size(int dtype);
const char* dtype_name(int dtype);
size_t element_count(const bm::Shape& shape);
bm::Shape make_shape(std::initializer_list<int> dims);
// A view of `bytes` bytes at `offset` inside `mem` (same device memory, no copy).
bm::DeviceMem mem_slice(const bm::DeviceMem& mem, size_t offset, size_t bytes);

// Device memory we allocated ourselves; freed with the owner.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const Runtime* runtime, bm::Handle handle, size_t bytes);
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void reset();
  const bm::DeviceMem& mem() const { return mem_; }
  size_t bytes() const { return bytes_; }

 private:
  const Runtime* runtime_ = nullptr;
  bm::Handle handle_ = nullptr;
  bm::DeviceMem mem_{};
  size_t bytes_ = 0;
};

// Host <-> device copies on one handle; each throws DeviceError on failure.
struct Copier {
  const Runtime* rt;
  bm::Handle handle;
  // Device-to-device copies staged through host memory. The BM1688 CPU simulator's firmware
  // asserts ("num > 0" in sg_api_memcpy_byte) on every bm_memcpy_d2d_byte / bm_memcpy_d2d and
  // kills the process; its s2d and d2s copies work. Never set on hardware.
  bool d2d_via_host = false;
  double* seconds = nullptr;  // if set, time spent in copies is added here
  void to_device(const bm::DeviceMem& dst, const void* src, size_t bytes, size_t offset = 0) const;
  void to_host(void* dst, const bm::DeviceMem& src, size_t bytes, size_t offset = 0) const;
  void on_device(const bm::DeviceMem& dst, size_t dst_offset, const bm::DeviceMem& src, size_t src_offset,
                 size_t bytes) const;
};

class Net {
 public:
  Net() = default;
  explicit Net(const bm::NetInfo* info) : info_(info) {}

  const std::string name() const { return info_->name; }
  bool dynamic() const { return info_->is_dynamic; }
  int addr_mode() const { return info_->addr_mode; }
  int inputs() const { return info_->input_num; }
  int outputs() const { return info_->output_num; }
  int stages() const { return info_->stage_num; }
  int in_dtype(int i) const { return info_->input_dtypes[i]; }
  int out_dtype(int i) const { return info_->output_dtypes[i]; }
  const bm::Shape& in_shape(int i, int stage = 0) const { return info_->stages[stage].input_shapes[i]; }
  const bm::Shape& out_shape(int i, int stage = 0) const { return info_->stages[stage].output_shapes[i]; }
  const bm::DeviceMem& in_mem(int i, int stage = 0) const { return info_->stages[stage].input_mems[i]; }
  const bm::DeviceMem& out_mem(int i, int stage = 0) const { return info_->stages[stage].output_mems[i]; }
  int in_dim(int i, int d, int stage = 0) const { return in_shape(i, stage).dims[d]; }
  int out_dim(int i, int d, int stage = 0) const { return out_shape(i, stage).dims[d]; }
  std::string describe() const;  // "name(in: dtype[dims], ...; out: ...)" for errors

  // Tensors on the net's own memory with its maximum shapes; callers adjust shapes or mems.
  std::vector<bm::Tensor> input_tensors(int stage = 0) const;
  std::vector<bm::Tensor> output_tensors(int stage = 0) const;

  // Runs the net and waits for it. Throws DeviceError.
  void launch(const Runtime& rt, void* bmrt, bm::Handle handle, std::vector<bm::Tensor>& in,
              std::vector<bm::Tensor>& out) const;

 private:
  const bm::NetInfo* info_ = nullptr;
};

}  // namespace streamproc
