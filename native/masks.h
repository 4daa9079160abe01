// Attention masks the bmodel nets take as inputs (the ones whose masks are not built in).
#pragma once

#include <cstdint>
#include <vector>

namespace streamproc {

// Additive mask value for "cannot attend": what the converter's reference uses per dtype.
constexpr float kVitMaskValue = -10000.0f;
constexpr uint16_t kBf16MaskValue = 0xC61C;  // bf16(-9984)
constexpr uint16_t kF16MaskValue = 0xF0E2;   // f16(-10000)

// ViT mask [size, size] float32: 0 where row and column fall in the same [cu[i], cu[i+1])
// segment of the first cu.back() patches, kVitMaskValue elsewhere (padding included).
std::vector<float> vit_block_mask(const std::vector<int32_t>& cu_seqlens, int size);

// Causal prefill mask [rows, history_columns + rows] in half bits: row r sees the first
// `history` of the history columns and new columns 0..r; rows >= `real_rows` see nothing.
std::vector<uint16_t> prefill_mask(int rows, int real_rows, int history_columns, int history, uint16_t masked);

// Decode mask [1, columns + 1]: the first `history` columns and the last one open.
std::vector<uint16_t> decode_mask(int columns, int history, uint16_t masked);

}  // namespace streamproc
