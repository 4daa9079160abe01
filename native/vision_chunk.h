// One ViT call's input: the typed chunk that crosses the native boundary (in the manner of
// llama.cpp's mtmd_input_chunk: built once, validated at construction, immutable afterwards).
//
// A chunk holds whole temporal grids (frame pairs) of one image or video, already in the ViT's
// patch order. Full attention runs within each grid, so the grids' extent is all the engine
// needs to mask it: grid g is patches [g*P/G, (g+1)*P/G). Each grid's merged tokens go to the
// input row `grid_offsets[g]` (relative to the first token of the prefill): consecutive rows for
// Qwen2.5-VL (one vision block per video), one block per frame pair for Qwen3-VL (timestamps and
// vision markers between them). The family-specific parts are optional fields: the window
// attention of Qwen2.5-VL's ViT, the position-grid taps of Qwen3-VL's. Which ones a bmodel needs
// is its VitFamily's business (vit_family.h); a chunk for the other family is refused there.
//
// Ownership and threads: a chunk owns copies of its arrays and never changes after
// make_vision_chunk returns, so any number of threads may read it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace streamproc {

struct VisionChunk {
  std::vector<float> pixel_rows;       // [patches, features], ViT order
  int features = 0;                    // values per patch row (1176 Qwen2.5-VL, 1536 Qwen3-VL)
  std::vector<int32_t> position_ids;   // [patches, 2]: (row, column) of each patch, ViT order
  std::vector<int32_t> grid_offsets;   // [grids]: input row of each grid's first merged token
  std::vector<int32_t> window_seqlens; // Qwen2.5-VL: window runs in patches (rising from 0 to patches)
  std::vector<int32_t> reverse_index;  // Qwen2.5-VL: [patches / 4]
  std::vector<int32_t> pos_idx;        // Qwen3-VL: [patches, 4] rows of the position grid
  std::vector<float> pos_weight;       // Qwen3-VL: [patches, 4] their bilinear weights

  int patches() const { return features ? static_cast<int>(pixel_rows.size() / features) : 0; }
  int grids() const { return static_cast<int>(grid_offsets.size()); }
  int grid_patches() const { return grids() ? patches() / grids() : 0; }
  int tokens() const { return patches() / 4; }          // merged tokens (2x2 patches each)
  int grid_tokens() const { return grid_patches() / 4; }
  bool has_window() const { return !window_seqlens.empty() || !reverse_index.empty(); }
  bool has_position_grid() const { return !pos_idx.empty() || !pos_weight.empty(); }
  // Full-attention runs in patches: one per grid (what a ViT's full mask is made from).
  std::vector<int32_t> grid_seqlens() const;
};

// Checks the parts every chunk must have (shapes agree, whole 2x2 tokens per grid, offsets not
// negative) and throws InputError naming what is wrong. Family parts are checked by the family.
void check_chunk_shape(const VisionChunk& chunk);

}  // namespace streamproc
