#include "net.h"

#include <chrono>
#include <sstream>
#include <vector>

#include "errors.h"

namespace streamproc {

size_t dtype_size(int dtype) {
  switch (dtype) {
    case bm::kFloat32:
    case bm::kInt32:
    case bm::kUint32:
      return 4;
    case bm::kFloat16:
    case bm::kBFloat16:
    case bm::kInt16:
    case bm::kUint16:
      return 2;
    default:
      return 1;
  }
}

const char* dtype_name(int dtype) {
  switch (dtype) {
    case bm::kFloat32: return "float32";
    case bm::kFloat16: return "float16";
    case bm::kBFloat16: return "bfloat16";
    case bm::kInt32: return "int32";
    case bm::kUint32: return "uint32";
    case bm::kInt16: return "int16";
    case bm::kUint16: return "uint16";
    case bm::kInt8: return "int8";
    case bm::kUint8: return "uint8";
    default: return "unknown";
  }
}

size_t element_count(const bm::Shape& shape) {
  size_t count = 1;
  for (int i = 0; i < shape.num_dims; ++i) count *= static_cast<size_t>(shape.dims[i]);
  return count;
}

bm::Shape make_shape(std::initializer_list<int> dims) {
  bm::Shape shape{};
  shape.num_dims = static_cast<int>(dims.size());
  int i = 0;
  for (int d : dims) shape.dims[i++] = d;
  return shape;
}

bm::DeviceMem mem_slice(const bm::DeviceMem& mem, size_t offset, size_t bytes) {
  bm::DeviceMem out = mem;
  out.device_addr += offset;
  out.size = static_cast<uint32_t>(bytes);
  return out;
}

DeviceBuffer::DeviceBuffer(const Runtime* runtime, bm::Handle handle, size_t bytes)
    : runtime_(runtime), handle_(handle), bytes_(bytes) {
  if (runtime_->malloc_device_byte(handle_, &mem_, static_cast<unsigned int>(bytes)) != bm::kSuccess) {
    runtime_ = nullptr;
    throw DeviceError("cannot allocate " + std::to_string(bytes) + " bytes of device memory");
  }
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    runtime_ = other.runtime_;
    handle_ = other.handle_;
    mem_ = other.mem_;
    bytes_ = other.bytes_;
    other.runtime_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (runtime_ && bytes_) runtime_->free_device(handle_, mem_);
  runtime_ = nullptr;
  bytes_ = 0;
}

namespace {

// Adds the lifetime of this object to *sink (if any): cheap enough for every copy.
class Stopwatch {
 public:
  explicit Stopwatch(double* sink) : sink_(sink), start_(sink ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point()) {}
  ~Stopwatch() {
    if (sink_) *sink_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  double* sink_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

void Copier::to_device(const bm::DeviceMem& dst, const void* src, size_t bytes, size_t offset) const {
  if (bytes == 0) return;
  const Stopwatch watch(seconds);
  if (rt->memcpy_s2d_partial_offset(handle, dst, const_cast<void*>(src), static_cast<unsigned int>(bytes),
                                    static_cast<unsigned int>(offset)) != bm::kSuccess)
    throw DeviceError("copy to device failed (" + std::to_string(bytes) + " bytes)");
}

void Copier::to_host(void* dst, const bm::DeviceMem& src, size_t bytes, size_t offset) const {
  if (bytes == 0) return;
  const Stopwatch watch(seconds);
  if (rt->memcpy_d2s_partial_offset(handle, dst, src, static_cast<unsigned int>(bytes),
                                    static_cast<unsigned int>(offset)) != bm::kSuccess)
    throw DeviceError("copy from device failed (" + std::to_string(bytes) + " bytes)");
}

void Copier::on_device(const bm::DeviceMem& dst, size_t dst_offset, const bm::DeviceMem& src, size_t src_offset,
                       size_t bytes) const {
  if (bytes == 0) return;
  if (d2d_via_host) {  // timed by to_host and to_device
    std::vector<uint8_t> staging(bytes);
    to_host(staging.data(), src, bytes, src_offset);
    to_device(dst, staging.data(), bytes, dst_offset);
    return;
  }
  const Stopwatch watch(seconds);
  if (rt->memcpy_d2d_byte(handle, dst, dst_offset, src, src_offset, bytes) != bm::kSuccess)
    throw DeviceError("device-to-device copy failed (" + std::to_string(bytes) + " bytes)");
}

std::string Net::describe() const {
  std::ostringstream out;
  auto shape_text = [&](const bm::Shape& shape) {
    std::ostringstream s;
    for (int d = 0; d < shape.num_dims; ++d) s << (d ? "," : "") << shape.dims[d];
    return s.str();
  };
  out << name() << "(in:";
  for (int i = 0; i < inputs(); ++i) out << " " << dtype_name(in_dtype(i)) << "[" << shape_text(in_shape(i)) << "]";
  out << "; out:";
  for (int i = 0; i < outputs(); ++i) out << " " << dtype_name(out_dtype(i)) << "[" << shape_text(out_shape(i)) << "]";
  out << ")";
  return out.str();
}

std::vector<bm::Tensor> Net::input_tensors(int stage) const {
  std::vector<bm::Tensor> tensors(inputs());
  for (int i = 0; i < inputs(); ++i) {
    tensors[i].dtype = in_dtype(i);
    tensors[i].shape = in_shape(i, stage);
    tensors[i].device_mem = in_mem(i, stage);
    tensors[i].st_mode = 0;
  }
  return tensors;
}

std::vector<bm::Tensor> Net::output_tensors(int stage) const {
  std::vector<bm::Tensor> tensors(outputs());
  for (int i = 0; i < outputs(); ++i) {
    tensors[i].dtype = out_dtype(i);
    tensors[i].shape = out_shape(i, stage);
    tensors[i].device_mem = out_mem(i, stage);
    tensors[i].st_mode = 0;
  }
  return tensors;
}

void Net::launch(const Runtime& rt, void* bmrt, bm::Handle handle, std::vector<bm::Tensor>& in,
                 std::vector<bm::Tensor>& out) const {
  const bool ok = rt.rt_launch_tensor_ex(bmrt, info_->name, in.data(), static_cast<int>(in.size()), out.data(),
                                         static_cast<int>(out.size()), true, false);
  if (!ok) throw DeviceError("launching net " + name() + " failed");
  // The launch is asynchronous; wait so that timings and the next host copy see its results.
  if (rt.thread_sync(handle) != bm::kSuccess) throw DeviceError("waiting for net " + name() + " failed");
}

}  // namespace streamproc
