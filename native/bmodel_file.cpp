#include "bmodel_file.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <vector>

#include "errors.h"

namespace streamproc {
namespace {

constexpr uint32_t kMagic = 0xFF55AAEE;  // first word of every bmodel
constexpr size_t kHeaderBytes = 64;      // magic, header size, flatbuffer size, binary size, reserved

uint32_t read_u32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

uint16_t read_u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Just enough of a flatbuffer reader to check the root table of the model description (the
// `Model` table: type, version, time and chip strings at field ids 0-3, then the `net` vector at
// id 4) and read the chip name. libbmrt verifies the description itself, but when its verifier
// fails it prints the version, chip and time strings from the unverified root table: on a
// description of random bytes that dereferences wild offsets and kills the process. Every
// offset used here is bounds-checked, so a damaged description gives a BmodelError instead.
class Description {
 public:
  explicit Description(const std::vector<unsigned char>& bytes) : data_(bytes) {}

  // The root table and its vtable lie inside the buffer.
  bool root_ok() {
    if (data_.size() < 8) return false;
    table_ = read_u32(data_.data());
    if (!fits(table_, 4)) return false;
    const int64_t vtable = static_cast<int64_t>(table_) - static_cast<int32_t>(read_u32(data_.data() + table_));
    if (vtable < 0 || !fits(static_cast<size_t>(vtable), 4)) return false;
    vtable_ = static_cast<size_t>(vtable);
    vtable_bytes_ = read_u16(data_.data() + vtable_);
    const uint16_t table_bytes = read_u16(data_.data() + vtable_ + 2);
    return vtable_bytes_ >= 4 && vtable_bytes_ % 2 == 0 && fits(vtable_, vtable_bytes_) && fits(table_, table_bytes);
  }

  // Field `id` of the root table as a NUL-terminated string inside the buffer, or false.
  bool string_field(int id, std::string* out = nullptr) const {
    size_t at = 0;
    if (!field(id, &at) || !fits(at, 4)) return false;
    const size_t start = at + read_u32(data_.data() + at);
    if (!fits(start, 4)) return false;
    const size_t length = read_u32(data_.data() + start);
    if (!fits(start + 4, length + 1) || data_[start + 4 + length] != 0) return false;
    if (out) out->assign(reinterpret_cast<const char*>(data_.data() + start + 4), length);
    return true;
  }

  // Field `id` of the root table as a vector of 4-byte offsets inside the buffer.
  bool offset_vector_field(int id) const {
    size_t at = 0;
    if (!field(id, &at) || !fits(at, 4)) return false;
    const size_t start = at + read_u32(data_.data() + at);
    if (!fits(start, 4)) return false;
    const size_t count = read_u32(data_.data() + start);
    return count > 0 && count <= (data_.size() - start - 4) / 4;
  }

 private:
  bool fits(size_t offset, size_t bytes) const { return offset <= data_.size() && bytes <= data_.size() - offset; }

  bool field(int id, size_t* at) const {
    const size_t slot = 4 + 2 * static_cast<size_t>(id);
    if (slot + 2 > vtable_bytes_) return false;
    const uint16_t offset = read_u16(data_.data() + vtable_ + slot);
    if (offset == 0) return false;
    *at = table_ + offset;
    return true;
  }

  const std::vector<unsigned char>& data_;
  size_t table_ = 0, vtable_ = 0, vtable_bytes_ = 0;
};

}  // namespace

BmodelFile check_bmodel_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) throw BmodelError(path + ": cannot open the bmodel (missing or unreadable)");
  BmodelFile result;
  result.bytes = static_cast<size_t>(file.tellg());
  if (result.bytes < kHeaderBytes) throw BmodelError(path + ": not a bmodel (file too small)");
  file.seekg(0);
  unsigned char header[kHeaderBytes];
  file.read(reinterpret_cast<char*>(header), kHeaderBytes);
  if (read_u32(header) != kMagic) throw BmodelError(path + ": not a bmodel (bad magic number)");
  const uint64_t header_size = read_u32(header + 4);
  const uint64_t description_size = read_u32(header + 8);
  const uint64_t binary_size = read_u32(header + 12);
  const uint64_t expected = header_size + description_size + binary_size;
  if (result.bytes < expected) {
    throw BmodelError(path + ": the bmodel is truncated (" + std::to_string(result.bytes) + " bytes, its header says " +
                      std::to_string(expected) + ")");
  }
  std::vector<unsigned char> description(static_cast<size_t>(description_size));
  file.seekg(static_cast<std::streamoff>(header_size));
  file.read(reinterpret_cast<char*>(description.data()), static_cast<std::streamsize>(description.size()));
  if (!file) throw BmodelError(path + ": cannot read the bmodel's description");
  Description model(description);
  bool ok = model.root_ok();
  for (int id = 0; ok && id < 4; ++id) ok = model.string_field(id);  // type, version, time, chip
  if (!ok || !model.offset_vector_field(4) || !model.string_field(3, &result.chip))
    throw BmodelError(path + ": the bmodel is damaged (its model description does not parse)");
  return result;
}

}  // namespace streamproc
