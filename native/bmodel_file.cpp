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

// The chip name is a flatbuffer string (u32 length, bytes, NUL) near the start of the model
// description; finding a known name stored that way avoids parsing the whole schema.
std::string find_chip(const std::vector<unsigned char>& description) {
  static const char* kChips[] = {"BM1684X", "BM1688", "BM1684", "BM1690", "CV186X", "SG2380", "MARS3"};
  for (const char* chip : kChips) {
    const size_t length = std::strlen(chip);
    for (size_t at = 4; at + length < description.size(); ++at) {
      if (std::memcmp(description.data() + at, chip, length) == 0 && read_u32(description.data() + at - 4) == length &&
          description[at + length] == 0)
        return chip;
    }
  }
  return "";
}

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
  result.chip = find_chip(description);
  return result;
}

}  // namespace streamproc
