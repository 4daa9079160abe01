// The two ViT families (see vit_family.h) and the checks every vision chunk gets.
#include "vit_family.h"

#include <algorithm>

#include "errors.h"
#include "masks.h"

namespace streamproc {
namespace {

// `values` zero-padded (or cut) to `size` elements: a static vit sees its full row count.
template <typename T>
std::vector<T> padded(const std::vector<T>& values, size_t size) {
  std::vector<T> out(size, T{});
  std::copy_n(values.begin(), std::min(size, values.size()), out.begin());
  return out;
}

template <typename T>
void upload(const Copier& copy, const bm::Tensor& tensor, const std::vector<T>& values) {
  copy.to_device(tensor.device_mem, values.data(), values.size() * sizeof(T));
}

bool rises(const std::vector<int32_t>& cu, int last) {
  return cu.size() >= 2 && cu.front() == 0 && cu.back() == last && std::is_sorted(cu.begin(), cu.end());
}

// Qwen2.5-VL: rows in window order, a full and a window mask, the reverse index.
class Qwen25Vit : public VitFamily {
 public:
  const char* name() const override { return "qwen2.5-vl"; }

  void check(const VisionChunk& chunk) const override {
    if (chunk.has_position_grid())
      throw InputError("the chunk carries Qwen3-VL position-grid taps, but this is a Qwen2.5-VL bmodel: build its "
                       "inputs with this bmodel's tokenizer folder");
    const int patches = chunk.patches();
    if (!rises(chunk.window_seqlens, patches))
      throw InputError("a Qwen2.5-VL vision chunk needs window_seqlens rising from 0 to its patch count");
    if (chunk.reverse_index.size() != static_cast<size_t>(patches) / 4)
      throw InputError("a Qwen2.5-VL vision chunk needs reverse_index of patches / 4 entries");
    for (int32_t index : chunk.reverse_index)
      if (index < 0 || index >= patches / 4) throw InputError("vision chunk reverse_index out of range");
  }

  void fill(const VisionChunk& chunk, int rows, bool dynamic, std::vector<bm::Tensor>& in,
            const Copier& copy) const override {
    if (dynamic) {
      in[0].shape = make_shape({rows, chunk.features});
      in[1].shape = make_shape({rows, 2});
      in[2].shape = make_shape({1, 1, rows, rows});
      in[3].shape = make_shape({1, 1, rows, rows});
      in[4].shape = make_shape({rows / 4});
    }
    upload(copy, in[0], padded(chunk.pixel_rows, static_cast<size_t>(rows) * chunk.features));
    upload(copy, in[1], padded(chunk.position_ids, static_cast<size_t>(rows) * 2));
    upload(copy, in[2], vit_block_mask(chunk.grid_seqlens(), rows));
    upload(copy, in[3], vit_block_mask(chunk.window_seqlens, rows));
    upload(copy, in[4], padded(chunk.reverse_index, static_cast<size_t>(rows) / 4));
  }
};

// Qwen3-VL: rows in the processor's order, the position-grid taps, a mask when the vit has one;
// outputs the merged tokens and one map per DeepStack layer.
class Qwen3Vit : public VitFamily {
 public:
  Qwen3Vit(int deepstack, bool masked) : deepstack_(deepstack), masked_(masked) {}
  const char* name() const override { return "qwen3-vl"; }
  int deepstack_layers() const override { return deepstack_; }
  bool masked() const override { return masked_; }

  void check(const VisionChunk& chunk) const override {
    if (chunk.has_window())
      throw InputError("the chunk carries Qwen2.5-VL window attention, but this is a Qwen3-VL bmodel: build its "
                       "inputs with this bmodel's tokenizer folder");
    const size_t taps = static_cast<size_t>(chunk.patches()) * 4;
    if (chunk.pos_idx.size() != taps || chunk.pos_weight.size() != taps)
      throw InputError("a Qwen3-VL vision chunk needs pos_idx and pos_weight of [patches, 4]");
    for (int32_t index : chunk.pos_idx)
      if (index < 0) throw InputError("vision chunk pos_idx must not be negative");
    if (!masked_ && chunk.grids() > 1)
      throw InputError("this bmodel's ViT takes no attention mask (a --dynamic build): give it one frame pair a call, "
                       "not " + std::to_string(chunk.grids()));
  }

  void fill(const VisionChunk& chunk, int rows, bool dynamic, std::vector<bm::Tensor>& in,
            const Copier& copy) const override {
    if (dynamic) {
      in[0].shape = make_shape({rows, chunk.features});
      in[1].shape = make_shape({rows, 2});
      in[2].shape = make_shape({rows, 4});
      in[3].shape = make_shape({rows, 4, 1});
      if (masked_) in[4].shape = make_shape({1, 1, rows, rows});
    }
    upload(copy, in[0], padded(chunk.pixel_rows, static_cast<size_t>(rows) * chunk.features));
    upload(copy, in[1], padded(chunk.position_ids, static_cast<size_t>(rows) * 2));
    upload(copy, in[2], padded(chunk.pos_idx, static_cast<size_t>(rows) * 4));
    upload(copy, in[3], padded(chunk.pos_weight, static_cast<size_t>(rows) * 4));
    if (masked_) upload(copy, in[4], vit_block_mask(chunk.grid_seqlens(), rows));
  }

 private:
  int deepstack_;
  bool masked_;
};

}  // namespace

std::vector<int32_t> VisionChunk::grid_seqlens() const {
  std::vector<int32_t> cu(static_cast<size_t>(grids()) + 1, 0);
  for (int g = 1; g <= grids(); ++g) cu[g] = g * grid_patches();
  return cu;
}

void check_chunk_shape(const VisionChunk& chunk) {
  if (chunk.features <= 0 || chunk.pixel_rows.size() % chunk.features)
    throw InputError("vision chunk pixel_rows must be [patches, features]");
  const int patches = chunk.patches();
  if (patches <= 0 || patches % 4 != 0)
    throw InputError("a vision chunk must have a positive multiple of 4 patches, got " + std::to_string(patches));
  if (chunk.position_ids.size() != static_cast<size_t>(patches) * 2)
    throw InputError("vision chunk position_ids must be [patches, 2]");
  if (chunk.grids() < 1 || patches % chunk.grids() != 0 || chunk.grid_patches() % 4 != 0)
    throw InputError("vision chunk grid_offsets must name whole frame pairs of whole 2x2 tokens (" +
                     std::to_string(chunk.grids()) + " grids for " + std::to_string(patches) + " patches)");
  for (int32_t offset : chunk.grid_offsets)
    if (offset < 0) throw InputError("vision chunk grid_offsets must not be negative");
}

std::unique_ptr<VitFamily> VitFamily::detect(const Net& vit) {
  const int inputs = vit.inputs();
  if (inputs == 5 && vit.in_shape(2).num_dims == 4 && vit.in_shape(4).num_dims == 1 && vit.outputs() == 1)
    return std::make_unique<Qwen25Vit>();
  if ((inputs == 4 || inputs == 5) && vit.in_shape(2).num_dims == 2 && vit.in_dim(2, 1) == 4 &&
      vit.in_shape(3).num_dims == 3)
    return std::make_unique<Qwen3Vit>(vit.outputs() - 1, inputs == 5);
  throw BmodelError("not a Qwen2.5-VL or Qwen3-VL vit net: " + vit.describe());
}

}  // namespace streamproc
