// The Qwen2.5-VL engine over a bmodel: tensors and token ids in, token ids out.
//
// Ownership: an Engine owns its device handle, its bmruntime (which loads the bmodel; libbmrt
// shares the weights of identical bmodels across runtimes in one process) and the device
// buffers it allocates. Everything is freed by the destructor or close().
// Thread safety: one Engine is used by one thread at a time (calls are not synchronised);
// different Engines, on the same bmodel or not, may run concurrently from different threads.
// The KV cache lives in the decode nets' own input memory, so it is per engine.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bmrt_api.h"
#include "net.h"
#include "runtime.h"

namespace streamproc {

// How the bmodel's prefill blocks take history (read from the nets, never assumed).
enum class PrefillLayout {
  kStatic,      // block_N: states, positions, mask [1,1,S,S]; no history
  kDynamic,     // block_N dynamic without mask input; no history
  kHistoryNew,  // block_N (first chunk) + block_kv_N (with history_k/v inputs), mask built in
  kHistoryOld,  // block_N static, 5 inputs: states, positions, mask [1,1,M,P+M], history_k/v
};

struct ModelInfo {
  std::string chip;
  std::string layout;
  int layers = 0;
  int seq_length = 0;      // tokens the KV cache holds
  int max_input = 0;       // tokens one prefill launch takes
  int hidden = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_patches = 0;     // ViT rows per call
  bool vit_dynamic = false;
  bool prefill_dynamic = false;
  bool has_sample_head = false;
  bool lm_head_returns_token = true;
  int vocab = 0;
  int max_history = 0;     // history rows the old layout's block_N takes
  int decode_stages = 1;
  std::vector<std::string> nets;
};

// One ViT call: whole temporal grids whose patches fit MAX_PATCHES.
struct VisionChunk {
  int token_offset = 0;                 // where its merged tokens go in the input
  std::vector<float> pixel_rows;        // [patches, 1176], already in window order
  std::vector<int32_t> rotary_pos;      // [patches, 2] (h, w), window order
  std::vector<int32_t> cu_seqlens;      // full attention: per temporal grid, in patches
  std::vector<int32_t> cu_window_seqlens;  // window attention, in patches
  std::vector<int32_t> reverse_index;   // [patches / 4]
  int patches = 0;
};

struct SamplingParams {
  bool do_sample = false;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 50;
  float repetition_penalty = 1.0f;
};

struct StepTimes {  // seconds, accumulated since the last reset
  double vit = 0, prefill = 0, decode = 0;
};

class Engine {
 public:
  Engine(const std::string& bmodel_path, int device_id, const std::string& runtime_dir);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelInfo& info() const { return info_; }
  const std::string& runtime_path() const { return runtime_->bmrt_path; }
  bool supports_history() const;
  int history_length() const { return history_; }
  void clear_history() { history_ = 0; tokens_.clear(); }
  // Forget everything after the first `tokens` cached tokens (e.g. to ask another question
  // about the same video): their KV rows stay valid, later rows are overwritten.
  void truncate_history(int tokens);
  void close();

  // Prefill `input_ids` (with the visual tokens of `vision` spliced in at their offsets) after
  // the current history, and return the first generated token. `next_position` is the
  // position id the first generated token takes (max position so far + 1).
  int prefill(const std::vector<int32_t>& input_ids, const std::vector<int32_t>& position_ids,
              const std::vector<VisionChunk>& vision, int next_position, const SamplingParams& params);
  // Feed the last token, return the next one.
  int decode(int token, const SamplingParams& params);
  void seed(uint64_t value) { rng_.seed(value); }
  StepTimes& times() { return times_; }

 private:
  void inspect_nets();
  void check_input(size_t tokens, const std::vector<VisionChunk>& vision) const;
  void embed(const std::vector<int32_t>& ids, size_t start_row);
  void run_vision(const VisionChunk& chunk);
  void prefill_chunk(size_t row0, size_t count, const std::vector<int32_t>& positions, size_t total);
  void prefill_full_static(size_t count, const std::vector<int32_t>& positions);
  void store_kv(int layer, const bm::DeviceMem& k, const bm::DeviceMem& v, size_t rows, size_t at_row);
  int head(const bm::DeviceMem& hidden_row, const SamplingParams& params);
  int sample(const std::vector<float>& probs, const std::vector<int32_t>& ids);

  std::shared_ptr<const Runtime> runtime_;
  bm::Handle handle_ = nullptr;
  void* bmrt_ = nullptr;
  ModelInfo info_;
  PrefillLayout layout_ = PrefillLayout::kDynamic;
  std::map<std::string, Net> nets_;
  std::vector<Net*> blocks_, blocks_kv_, blocks_cache_;
  Net *embedding_ = nullptr, *embedding_cache_ = nullptr, *lm_head_ = nullptr, *vit_ = nullptr;
  Net *greedy_head_ = nullptr, *sample_head_ = nullptr;
  DeviceBuffer hidden_buf_;  // [seq_length, hidden] input rows of the current prefill
  DeviceBuffer token_buf_;   // [1, hidden] between decode layers
  size_t half_bytes_ = 2;    // bytes of the model's half type
  bm::DataType half_type_ = bm::kBFloat16;
  size_t kv_row_bytes_ = 0;  // kv_heads * head_dim * half
  int history_ = 0;          // tokens in the KV cache
  int next_position_ = 0;
  std::vector<int32_t> tokens_;  // tokens in the cache, for the repetition penalty
  std::mt19937_64 rng_{0};
  StepTimes times_;
};

}  // namespace streamproc
