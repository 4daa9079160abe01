// The ViT: one call per chunk of whole temporal grids, fed as its family says (vit_family.h); the
// merged tokens of each grid are copied over that grid's pad rows of the input, and Qwen3-VL's
// DeepStack maps to the same rows of their own buffers, which prefill adds after the first
// decoder layers. Static vits are padded to MAX_PATCHES (masked with -10000: a padded area of 0
// silently degrades the output); dynamic ones get the real shapes.
#include <algorithm>

#include "engine.h"
#include "errors.h"
#include "half.h"

namespace streamproc {

void Engine::run_vision(const VisionChunk& chunk) {
  const int rows = info_.vit_dynamic ? chunk.patches() : info_.max_patches;  // rows the net sees
  auto in = vit_->input_tensors();
  auto out = vit_->output_tensors();
  const DeviceTurn turn(*this);
  vit_family_->fill(chunk, rows, info_.vit_dynamic, in, copier());
  launch(*vit_, in, out);
  place_vit_rows(out[0].device_mem, vit_->out_dtype(0), chunk, hidden_buf_.mem());
  for (int layer = 0; layer < info_.deepstack_layers; ++layer)
    place_vit_rows(out[1 + layer].device_mem, vit_->out_dtype(1 + layer), chunk, deepstack_bufs_[layer].mem());
}

void Engine::place_vit_rows(const bm::DeviceMem& out, int out_type, const VisionChunk& chunk, const bm::DeviceMem& dst) {
  const Copier copy = copier();
  const size_t row_bytes = static_cast<size_t>(info_.hidden) * half_bytes_;
  const size_t grid_tokens = static_cast<size_t>(chunk.grid_tokens());
  if (out_type == half_type_) {
    for (int g = 0; g < chunk.grids(); ++g)
      copy.on_device(dst, chunk.grid_offsets[g] * row_bytes, out, g * grid_tokens * row_bytes, grid_tokens * row_bytes);
    return;
  }
  if (out_type != bm::kFloat32) throw BmodelError("unsupported vit output type " + std::string(dtype_name(out_type)));
  // A float32 vit output is converted to the language model's half type on the host.
  std::vector<float> values(static_cast<size_t>(chunk.tokens()) * info_.hidden);
  copy.to_host(values.data(), out, values.size() * sizeof(float));
  std::vector<uint16_t> halves(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    halves[i] = half_type_ == bm::kBFloat16 ? float_to_bf16(values[i]) : float_to_f16(values[i]);
  const size_t grid_values = grid_tokens * info_.hidden;
  for (int g = 0; g < chunk.grids(); ++g)
    copy.to_device(dst, halves.data() + g * grid_values, grid_values * sizeof(uint16_t), chunk.grid_offsets[g] * row_bytes);
}

void Engine::clear_deepstack(size_t rows) {
  const Copier copy = copier();
  const std::vector<uint8_t> zeros(rows * info_.hidden * half_bytes_, 0);
  for (DeviceBuffer& buffer : deepstack_bufs_) copy.to_device(buffer.mem(), zeros.data(), zeros.size());
}

// The bmodel's `add` net: an element-wise half add of two [max_input * hidden] vectors. Rows off
// the visual positions add 0, which leaves them as they are, as transformers' masked add does.
void Engine::add_deepstack(int layer, size_t row0, size_t count) {
  if (!deepstack_active_ || layer >= info_.deepstack_layers) return;
  const Copier copy = copier();
  const size_t bytes = count * info_.hidden * half_bytes_;
  const size_t at = row0 * info_.hidden * half_bytes_;
  auto in = add_->input_tensors();
  auto out = add_->output_tensors();
  const DeviceTurn turn(*this);
  copy.on_device(in[0].device_mem, 0, hidden_buf_.mem(), at, bytes);
  copy.on_device(in[1].device_mem, 0, deepstack_bufs_[layer].mem(), at, bytes);
  launch(*add_, in, out);
  copy.on_device(hidden_buf_.mem(), at, out[0].device_mem, 0, bytes);
}

}  // namespace streamproc
