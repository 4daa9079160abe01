// bfloat16 / float16 conversions for the few host-side values the engine writes or reads
// (masks, KV rows converted between dtypes, logits). Portable C++: no intrinsics.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace streamproc {

inline uint16_t float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);                   // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

inline float bf16_to_float(uint16_t value) {
  uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

inline uint16_t float_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (magnitude >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to inf
  if (magnitude < 6.103515625e-05f) {  // subnormal half
    const uint32_t sub = static_cast<uint32_t>(std::nearbyint(magnitude * 16777216.0f));
    return static_cast<uint16_t>(sign | sub);
  }
  int exponent;
  const float mantissa = std::frexp(magnitude, &exponent);  // magnitude = mantissa * 2^exponent
  uint32_t half_mantissa = static_cast<uint32_t>(std::nearbyint((mantissa * 2.0f - 1.0f) * 1024.0f));
  uint32_t half_exponent = static_cast<uint32_t>(exponent - 1 + 15);
  if (half_mantissa == 1024) {  // rounding carried into the exponent
    half_mantissa = 0;
    ++half_exponent;
  }
  return static_cast<uint16_t>(sign | (half_exponent << 10) | half_mantissa);
}

inline float f16_to_float(uint16_t value) {
  const uint32_t sign = value & 0x8000u;
  const uint32_t exponent = (value >> 10) & 0x1fu;
  const uint32_t mantissa = value & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

}  // namespace streamproc
