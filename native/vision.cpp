// The ViT: one call per chunk of whole temporal grids, its merged tokens copied over the
// chunk's pad rows of the input. Static vits are padded to MAX_PATCHES (masked with -10000:
// a padded area of 0 silently degrades the output); dynamic ones get the real shapes.
#include <algorithm>

#include "engine.h"
#include "errors.h"
#include "half.h"
#include "masks.h"

namespace streamproc {

void Engine::run_vision(const VisionChunk& chunk) {
  const Copier copy = copier();
  const int patches = chunk.patches;
  const int size = info_.vit_dynamic ? patches : info_.max_patches;  // rows the net sees
  auto in = vit_->input_tensors();
  auto out = vit_->output_tensors();

  std::vector<float> states(static_cast<size_t>(size) * 1176, 0.0f);
  std::copy(chunk.pixel_rows.begin(), chunk.pixel_rows.end(), states.begin());
  std::vector<int32_t> rotary(static_cast<size_t>(size) * 2, 0);
  std::copy(chunk.rotary_pos.begin(), chunk.rotary_pos.end(), rotary.begin());
  std::vector<int32_t> reverse(static_cast<size_t>(size) / 4, 0);
  std::copy(chunk.reverse_index.begin(), chunk.reverse_index.end(), reverse.begin());
  const auto full_mask = vit_block_mask(chunk.cu_seqlens, size);
  const auto window_mask = vit_block_mask(chunk.cu_window_seqlens, size);

  const DeviceTurn turn(*this);
  if (info_.vit_dynamic) {
    in[0].shape = make_shape({size, 1176});
    in[1].shape = make_shape({size, 2});
    in[2].shape = make_shape({1, 1, size, size});
    in[3].shape = make_shape({1, 1, size, size});
    in[4].shape = make_shape({size / 4});
  }
  copy.to_device(in[0].device_mem, states.data(), states.size() * sizeof(float));
  copy.to_device(in[1].device_mem, rotary.data(), rotary.size() * sizeof(int32_t));
  copy.to_device(in[2].device_mem, full_mask.data(), full_mask.size() * sizeof(float));
  copy.to_device(in[3].device_mem, window_mask.data(), window_mask.size() * sizeof(float));
  copy.to_device(in[4].device_mem, reverse.data(), reverse.size() * sizeof(int32_t));
  launch(*vit_, in, out);

  const size_t tokens = static_cast<size_t>(patches) / 4;
  const size_t row_bytes = static_cast<size_t>(info_.hidden) * half_bytes_;
  const size_t offset = static_cast<size_t>(chunk.token_offset) * row_bytes;
  const int out_type = vit_->out_dtype(0);
  if (out_type == half_type_) {
    copy.on_device(hidden_buf_.mem(), offset, out[0].device_mem, 0, tokens * row_bytes);
    return;
  }
  if (out_type != bm::kFloat32) throw BmodelError("unsupported vit output type " + std::string(dtype_name(out_type)));
  // A float32 vit output is converted to the language model's half type on the host.
  std::vector<float> values(tokens * info_.hidden);
  copy.to_host(values.data(), out[0].device_mem, values.size() * sizeof(float));
  std::vector<uint16_t> halves(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    halves[i] = half_type_ == bm::kBFloat16 ? float_to_bf16(values[i]) : float_to_f16(values[i]);
  copy.to_device(hidden_buf_.mem(), halves.data(), halves.size() * sizeof(uint16_t), offset);
}

}  // namespace streamproc
