// The model family seam of the engine: how a bmodel's `vit` net is fed and what it returns.
//
// Qwen2.5-VL's vit takes window-ordered rows, rotary ids, a full and a window attention mask and
// the reverse index, and returns the merged tokens. Qwen3-VL's takes rows, rotary ids, the four
// position-grid taps per patch and (static builds) one attention mask, and returns the merged
// tokens plus one feature map per DeepStack layer, which the engine adds to the hidden states of
// the first decoder layers at the visual rows (through the bmodel's `add` net). Everything else
// (embedding, prefill layouts, decode, heads) is the same for both families.
//
// Thread safety: a VitFamily is immutable after detect(); the engine's call lock covers its use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "net.h"
#include "vision_chunk.h"

namespace streamproc {

class VitFamily {
 public:
  virtual ~VitFamily() = default;
  // "qwen2.5-vl" or "qwen3-vl" (ModelInfo.family).
  virtual const char* name() const = 0;
  // Feature maps the vit returns besides the merged tokens (Qwen3-VL's DeepStack layers).
  virtual int deepstack_layers() const { return 0; }
  // Whether the vit takes an attention mask; without one (Qwen3-VL --dynamic builds) it attends
  // across everything it is given, so a chunk must hold a single frame pair.
  virtual bool masked() const { return true; }
  // Throws InputError when `chunk` is not what this family's vit takes (beyond its shape).
  virtual void check(const VisionChunk& chunk) const = 0;
  // Uploads the chunk into the vit's inputs `in` for a launch of `rows` patches (rows >= the
  // chunk's patches: a static vit is padded, its pad rows masked out), setting dynamic shapes.
  virtual void fill(const VisionChunk& chunk, int rows, bool dynamic, std::vector<bm::Tensor>& in,
                    const Copier& copy) const = 0;

  // The family whose vit this is (read from its inputs and outputs); BmodelError otherwise.
  static std::unique_ptr<VitFamily> detect(const Net& vit);
};

}  // namespace streamproc
