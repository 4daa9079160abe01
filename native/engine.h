// The Qwen VL engine over a bmodel (Qwen2.5-VL or Qwen3-VL): tensors and token ids in, token ids out.
// What differs between the families is the vit net and DeepStack (vit_family.h).
//
// Ownership: an Engine owns its device handle, its bmruntime (which loads the bmodel; libbmrt
// shares the weights of identical bmodels across runtimes in one process) and the device
// buffers it allocates. close() (or the destructor) hands them to a per-device list that frees
// them when the last engine on that device closes (see Engine::close for why).
// Thread safety: one Engine runs one call at a time: prefill/decode/generate/close hold the
// engine's call lock, so a second thread's call waits for the first. abort() is the exception:
// it may be called from any thread at any time, takes no lock and returns at once. close()
// aborts a running call and waits for it to end before freeing anything.
// Different Engines, on the same bmodel or not, may run concurrently from different threads.
//
// Aborts and failures: abort() sets a flag that the running call checks before every net
// launch (so between ViT chunks, between prefill chunks and layers, between decode steps) and
// once more before it returns; the call that sees it throws Aborted and clears the flag. If no
// call runs, the next call is the one aborted. After ANY exception from prefill, decode or
// generate (Aborted, InputError, DeviceError) the engine's state is what it was before the
// call: history_length(), the cached tokens and the next position are restored; KV rows past
// the history may hold partial results, which later calls overwrite before reading. The
// engine stays usable.
// The KV cache lives in the decode nets' own input memory, so it is per engine. Net I/O memory
// is not: libbmrt places some nets' inputs and outputs at the same device addresses in every
// runtime of the process (with 1.30.2, the embedding and vit nets of two runtimes over one
// bmodel), so each step that writes a net's inputs, launches it and moves its outputs into the
// engine's own buffers holds a per-device lock (DeviceTurn). Host work between steps overlaps;
// launches on one device are serialised, as the chip runs one net at a time anyway.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "bmrt_api.h"
#include "net.h"
#include "runtime.h"
#include "vision_chunk.h"
#include "vit_family.h"

namespace streamproc {

// How the bmodel's prefill blocks take history (read from the nets, never assumed).
enum class PrefillLayout {
  kStatic,      // block_N: states, positions, mask [1,1,S,S]; no history
  kDynamic,     // block_N dynamic without mask input; no history
  kHistoryNew,  // block_N (first chunk) + block_kv_N (with history_k/v inputs), mask built in
  kHistoryOld,  // block_N static, 5 inputs: states, positions, mask [1,1,M,P+M], history_k/v
};

// What a loaded bmodel takes, read from its nets (Engine::info()); fixed for the engine's life.
struct ModelInfo {
  std::string chip;
  std::string family;      // qwen2.5-vl | qwen3-vl (from the vit net)
  std::string layout;
  int layers = 0;
  int seq_length = 0;      // tokens the KV cache holds
  int max_input = 0;       // tokens one prefill launch takes
  int hidden = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int max_patches = 0;     // ViT rows per call
  int patch_features = 0;  // values per ViT row (1176 Qwen2.5-VL, 1536 Qwen3-VL)
  int deepstack_layers = 0;  // Qwen3-VL: feature maps added after the first decoder layers
  bool vit_masked = true;  // the vit takes an attention mask: a call may hold several frame pairs
  bool vit_dynamic = false;
  bool prefill_dynamic = false;
  bool has_sample_head = false;
  bool lm_head_returns_token = true;
  int vocab = 0;
  int max_history = 0;     // history rows the old layout's block_N takes
  int decode_stages = 1;
  bool supports_history = false;  // prefill continues after the cached tokens (history layouts)
  std::string runtime;            // the libbmrt this engine runs on
  std::vector<std::string> nets;
};

// How the next token is chosen; the defaults are greedy. Checked by every call (check_sampling):
// with do_sample, temperature > 0, 0 < top_p <= 1, top_k >= 1, and a bmodel with a sample_head.
struct SamplingParams {
  bool do_sample = false;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 50;
  float repetition_penalty = 1.0f;
};

// One piece of device memory the engine uses, for checks and diagnostics (memory_map()).
struct MemRegion {
  std::string label;  // "hidden", "kv_cache 0 k", "net block_0 in 0 (stage 0)", ...
  uint64_t address = 0;
  uint64_t bytes = 0;
  bool own = false;   // this engine's alone (its buffers, its KV cache); false: a net's I/O memory
};

struct StepTimes {  // seconds, accumulated since the last reset
  double vit = 0, prefill = 0, decode = 0;  // wall time of each phase inside the engine
  // Of which inside net launches (launch + wait for the device; on the CPU simulator, its
  // simulated compute): the rest of a phase is host work (copies, masks) and lock waits.
  double vit_device = 0, prefill_device = 0, decode_device = 0;
  double copies = 0;     // in host<->device and device<->device copies (all phases)
  double lock_wait = 0;  // waiting for another engine's turn on the device (all phases)
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

  // Prefill `input_ids` (with the visual tokens of `vision` spliced in at their grid offsets) after
  // the current history, and return the first generated token. `next_position` is the
  // position id the first generated token takes (max position so far + 1).
  int prefill(const std::vector<int32_t>& input_ids, const std::vector<int32_t>& position_ids,
              const std::vector<VisionChunk>& vision, int next_position, const SamplingParams& params);
  // Feed the last token, return the next one.
  int decode(int token, const SamplingParams& params);
  // Decode from `first_token` (what prefill returned) until a stop token, max_new_tokens tokens
  // or the sequence end; returns every generated token, `first_token` included. One call: on
  // abort or failure the history goes back to where it was before generate.
  std::vector<int> generate(int first_token, int max_new_tokens, const std::vector<int>& stop_ids,
                            const SamplingParams& params);
  // Ask the running call (or, if none runs, the next one) to stop; any thread, never blocks.
  void abort() { abort_requested_.store(true); }
  // Drop a pending abort() that no call has seen yet.
  void clear_abort() { abort_requested_.store(false); }
  void seed(uint64_t value) { rng_.seed(value); }
  StepTimes& times() { return times_; }
  // Every device buffer the engine allocated, its KV cache and every net's I/O memory.
  std::vector<MemRegion> memory_map() const;

 private:
  // Holds the device for one step (see Thread safety above); counts the wait in times_.lock_wait.
  class DeviceTurn {
   public:
    explicit DeviceTurn(Engine& engine);
   private:
    std::unique_lock<std::mutex> lock_;
  };
  // One public call: holds the call lock; unless commit()ted, restores the history on exit.
  class Call {
   public:
    // keep_all_tokens: the call may drop cached tokens (prefill clears the history of bmodels
    // without history), so keep a copy of them all; else calls only append and a count will do.
    Call(Engine& engine, bool keep_all_tokens);
    ~Call();
    void commit();  // the last abort check, then keep the call's effects
   private:
    Engine& engine_;
    std::unique_lock<std::mutex> lock_;
    int history_, next_position_;
    size_t token_count_;
    std::vector<int32_t> tokens_;
    bool keep_all_tokens_;
    bool committed_ = false;
  };
  // Throws Aborted (and clears the flag) when abort() was called.
  void check_abort();
  int decode_step(int token, const SamplingParams& params);
  // Copies on this engine's handle, timed into times_.copies.
  Copier copier() { return Copier{runtime_.get(), handle_, d2d_via_host_, &times_.copies}; }
  // Net::launch, timed into *device_seconds_ (the phase being run).
  void launch(const Net& net, std::vector<bm::Tensor>& in, std::vector<bm::Tensor>& out);
  void inspect_nets();
  void inspect_layout(bool kv_nets);
  void inspect_vit();  // the family, ViT sizes and DeepStack (after the hidden size is known)
  void check_input(size_t tokens, const std::vector<VisionChunk>& vision) const;
  void check_sampling(const SamplingParams& params) const;
  void embed(const std::vector<int32_t>& ids, size_t start_row);
  void run_vision(const VisionChunk& chunk);
  // Output rows of the vit (out_type) to `dst` at each of the chunk's grid offsets.
  void place_vit_rows(const bm::DeviceMem& out, int out_type, const VisionChunk& chunk, const bm::DeviceMem& dst);
  // Qwen3-VL: hidden rows [row0, row0 + count) += DeepStack map `layer` (after decoder layer `layer`).
  void add_deepstack(int layer, size_t row0, size_t count);
  void clear_deepstack(size_t rows);
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
  Net *greedy_head_ = nullptr, *sample_head_ = nullptr, *add_ = nullptr;
  std::unique_ptr<VitFamily> vit_family_;
  std::vector<DeviceBuffer> deepstack_bufs_;  // [seq_length, hidden] per DeepStack layer, zero off the visual rows
  bool deepstack_active_ = false;  // this prefill has vision: add the DeepStack maps
  DeviceBuffer hidden_buf_;  // [seq_length, hidden] input rows of the current prefill
  // Decode: each layer reads one token buffer ([1, hidden]) and writes the other, and every layer
  // reads the step's positions [3] and mask [columns + 1] from one upload, so a decode step
  // copies nothing per layer (the block_cache nets take their I/O where they are told, addr_mode 1).
  DeviceBuffer token_bufs_[2];
  DeviceBuffer step_positions_;
  DeviceBuffer step_mask_;
  size_t half_bytes_ = 2;    // bytes of the model's half type
  bm::DataType half_type_ = bm::kBFloat16;
  size_t kv_row_bytes_ = 0;  // kv_heads * head_dim * half
  bool d2d_via_host_ = false;  // see Copier::d2d_via_host (the BM1688 simulator)
  int history_ = 0;          // tokens in the KV cache
  int next_position_ = 0;
  std::vector<int32_t> tokens_;  // tokens in the cache, for the repetition penalty
  std::mt19937_64 rng_{0};
  StepTimes times_;
  double* device_seconds_ = nullptr;  // the StepTimes field launches are counted in
  std::mutex* device_mutex_ = nullptr;  // shared by every engine on this device id
  std::mutex call_mutex_;                // held by the running call (see Thread safety)
  std::atomic<bool> abort_requested_{false};
  int device_id_ = 0;
};

}  // namespace streamproc
