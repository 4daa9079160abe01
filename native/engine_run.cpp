// Running a request: embedding, prefill in the bmodel's layout, decode with the KV cache kept
// in the decode nets' own input memory, and the lm / sampling heads.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

#include "engine.h"
#include "errors.h"
#include "half.h"
#include "masks.h"

namespace streamproc {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

Engine::DeviceTurn::DeviceTurn(Engine& engine) : lock_(*engine.device_mutex_, std::try_to_lock) {
  if (lock_.owns_lock()) return;
  const auto start = Clock::now();
  lock_.lock();
  engine.times_.lock_wait += seconds_since(start);
}

Engine::Call::Call(Engine& engine, bool keep_all_tokens)
    : engine_(engine),
      lock_(engine.call_mutex_),
      history_(engine.history_),
      next_position_(engine.next_position_),
      token_count_(engine.tokens_.size()),
      keep_all_tokens_(keep_all_tokens) {
  if (keep_all_tokens_) tokens_ = engine.tokens_;
}

Engine::Call::~Call() {
  engine_.device_seconds_ = nullptr;
  if (committed_) return;
  // Failed or aborted: the history as before the call (see engine.h). KV rows past it may
  // hold this call's partial results; they are overwritten before they are ever read.
  engine_.history_ = history_;
  engine_.next_position_ = next_position_;
  if (keep_all_tokens_) {
    engine_.tokens_.swap(tokens_);
  } else {
    engine_.tokens_.resize(token_count_);
  }
}

void Engine::Call::commit() {
  engine_.check_abort();  // an abort that came after the last launch still counts
  committed_ = true;
}

void Engine::check_abort() {
  if (abort_requested_.load(std::memory_order_relaxed) && abort_requested_.exchange(false))
    throw Aborted("the call was aborted (Engine.abort); the history is as before the call");
}

void Engine::launch(const Net& net, std::vector<bm::Tensor>& in, std::vector<bm::Tensor>& out) {
  check_abort();
  const auto start = Clock::now();
  net.launch(*runtime_, bmrt_, handle_, in, out);
  if (device_seconds_) *device_seconds_ += seconds_since(start);
}

void Engine::check_input(size_t tokens, const std::vector<VisionChunk>& vision) const {
  if (!handle_) throw InputError("the engine is closed");
  if (tokens == 0) throw InputError("empty input");
  const size_t limit = static_cast<size_t>(info_.seq_length);
  if (history_ + tokens >= limit) {
    throw InputError("the input (" + std::to_string(tokens) + " tokens" +
                     (history_ ? " after " + std::to_string(history_) + " in history" : std::string()) +
                     ") does not fit the bmodel's sequence length of " + std::to_string(limit) +
                     " tokens with room to answer");
  }
  if (layout_ == PrefillLayout::kStatic || layout_ == PrefillLayout::kDynamic) {
    const size_t block_rows = static_cast<size_t>(blocks_[0]->in_dim(0, 1));
    if (tokens > block_rows)
      throw InputError("the input has " + std::to_string(tokens) + " tokens; this bmodel's prefill takes at most " +
                       std::to_string(block_rows));
  }
  for (const VisionChunk& chunk : vision) {
    check_chunk_shape(chunk);
    if (chunk.features != info_.patch_features)
      throw InputError("vision chunk rows have " + std::to_string(chunk.features) + " values, this bmodel's ViT takes " +
                       std::to_string(info_.patch_features) + ": the inputs were built for another model family");
    if (chunk.patches() > info_.max_patches)
      throw InputError("a vision chunk of " + std::to_string(chunk.patches()) + " patches exceeds the bmodel's ViT limit of " +
                       std::to_string(info_.max_patches) + " (MAX_PATCHES): resize the image or split the video");
    vit_family_->check(chunk);
    for (int32_t offset : chunk.grid_offsets)
      if (static_cast<size_t>(offset) + chunk.grid_tokens() > tokens)
        throw InputError("vision chunk tokens fall outside the input");
  }
}

// Before anything runs: a refused request must leave the KV cache as it was.
void Engine::check_sampling(const SamplingParams& params) const {
  if (!params.do_sample) return;
  if (!(params.temperature > 0) || !(params.top_p > 0) || params.top_p > 1 || params.top_k < 1)
    throw InputError("sampling needs temperature > 0, 0 < top_p <= 1 and top_k >= 1");
  if (info_.lm_head_returns_token)
    throw InputError("this bmodel decodes greedily only (built without --do_sample): turn sampling off");
  if (!sample_head_) throw InputError("this bmodel has no sample_head: turn sampling off");
}

void Engine::truncate_history(int tokens) {
  if (tokens < 0 || tokens > history_)
    throw InputError("cannot keep " + std::to_string(tokens) + " tokens of a history of " + std::to_string(history_));
  history_ = tokens;
  tokens_.resize(static_cast<size_t>(tokens));
}

void Engine::embed(const std::vector<int32_t>& ids, size_t start_row) {
  const Copier copy = copier();
  const size_t width = static_cast<size_t>(info_.max_input);
  const size_t row_bytes = static_cast<size_t>(info_.hidden) * half_bytes_;
  std::vector<int32_t> padded(width, 0);
  for (size_t done = 0; done < ids.size(); done += width) {
    const size_t count = std::min(width, ids.size() - done);
    std::fill(padded.begin(), padded.end(), 0);
    std::copy(ids.begin() + done, ids.begin() + done + count, padded.begin());
    auto in = embedding_->input_tensors();
    auto out = embedding_->output_tensors();
    const DeviceTurn turn(*this);
    copy.to_device(in[0].device_mem, padded.data(), padded.size() * sizeof(int32_t));
    launch(*embedding_, in, out);
    // Shared memory: the embedding output may overlap the next net's inputs, so move it now.
    copy.on_device(hidden_buf_.mem(), (start_row + done) * row_bytes, out[0].device_mem, 0, count * row_bytes);
  }
}

void Engine::store_kv(int layer, const bm::DeviceMem& k, const bm::DeviceMem& v, size_t rows, size_t at_row) {
  const Copier copy = copier();
  const Net& cache = *blocks_cache_[layer];
  copy.on_device(cache.in_mem(3), at_row * kv_row_bytes_, k, 0, rows * kv_row_bytes_);
  copy.on_device(cache.in_mem(4), at_row * kv_row_bytes_, v, 0, rows * kv_row_bytes_);
}

// One launch of every layer over `count` rows of hidden_buf_ starting at `row0`, positions
// [3, count] packed contiguously; afterwards hidden_buf_ holds the last layer's output rows.
void Engine::prefill_chunk(size_t row0, size_t count, const std::vector<int32_t>& positions, size_t total) {
  const Copier copy = copier();
  const size_t row_bytes = static_cast<size_t>(info_.hidden) * half_bytes_;
  const size_t old = static_cast<size_t>(history_);
  const bool first = old == 0;
  std::vector<int32_t> chunk_positions(3 * count);
  for (int axis = 0; axis < 3; ++axis)
    std::copy_n(positions.begin() + axis * total + row0, count, chunk_positions.begin() + axis * count);
  for (int layer = 0; layer < info_.layers; ++layer) {
    const bool use_kv_net = layout_ == PrefillLayout::kHistoryNew && !first;
    const Net& net = use_kv_net ? *blocks_kv_[layer] : *blocks_[layer];
    auto in = net.input_tensors();
    auto out = net.output_tensors();
    in[0].shape = make_shape({1, static_cast<int>(count), info_.hidden});
    in[1].shape = make_shape({3, static_cast<int>(count)});
    {
      const DeviceTurn turn(*this);
      copy.on_device(in[0].device_mem, 0, hidden_buf_.mem(), row0 * row_bytes, count * row_bytes);
      copy.to_device(in[1].device_mem, chunk_positions.data(), chunk_positions.size() * sizeof(int32_t));
      if (use_kv_net) {
        const Net& cache = *blocks_cache_[layer];
        in[2].shape = make_shape({1, static_cast<int>(old), info_.kv_heads, info_.head_dim});
        in[3].shape = in[2].shape;
        copy.on_device(in[2].device_mem, 0, cache.in_mem(3), 0, old * kv_row_bytes_);
        copy.on_device(in[3].device_mem, 0, cache.in_mem(4), 0, old * kv_row_bytes_);
      }
      launch(net, in, out);
      store_kv(layer, out[1].device_mem, out[2].device_mem, count, old);
      copy.on_device(hidden_buf_.mem(), row0 * row_bytes, out[0].device_mem, 0, count * row_bytes);
    }
    add_deepstack(layer, row0, count);
  }
}

// Static-shaped prefill blocks: the old history layout (chunks of M rows against P history
// columns) and the mask layout without history (one launch of S rows).
void Engine::prefill_full_static(size_t count, const std::vector<int32_t>& positions) {
  const Copier copy = copier();
  const size_t row_bytes = static_cast<size_t>(info_.hidden) * half_bytes_;
  const Net& first_block = *blocks_[0];
  const int rows = first_block.in_dim(0, 1);
  const bool with_history = layout_ == PrefillLayout::kHistoryOld;
  const int history_columns = with_history ? first_block.in_dim(3, 1) : 0;
  const uint16_t masked = half_type_ == bm::kBFloat16 ? kBf16MaskValue : kF16MaskValue;
  for (size_t row0 = 0; row0 < count; row0 += rows) {
    const size_t real = std::min(static_cast<size_t>(rows), count - row0);
    const size_t old = static_cast<size_t>(history_);
    if (with_history && old > static_cast<size_t>(history_columns))
      throw InputError("the history (" + std::to_string(old) + " tokens) exceeds what this bmodel's prefill takes (" +
                       std::to_string(history_columns) + "); clear the history");
    std::vector<int32_t> chunk_positions(3 * static_cast<size_t>(rows), 0);
    for (int axis = 0; axis < 3; ++axis)
      std::copy_n(positions.begin() + axis * count + row0, real, chunk_positions.begin() + axis * rows);
    const auto mask = prefill_mask(rows, static_cast<int>(real), history_columns, static_cast<int>(old), masked);
    for (int layer = 0; layer < info_.layers; ++layer) {
      const Net& net = *blocks_[layer];
      auto in = net.input_tensors();
      auto out = net.output_tensors();
      {
        const DeviceTurn turn(*this);
        // Rows past `real` keep whatever finite values were there: they are masked out.
        copy.on_device(in[0].device_mem, 0, hidden_buf_.mem(), row0 * row_bytes, real * row_bytes);
        copy.to_device(in[1].device_mem, chunk_positions.data(), chunk_positions.size() * sizeof(int32_t));
        copy.to_device(in[2].device_mem, mask.data(), mask.size() * sizeof(uint16_t));
        if (with_history) {
          const Net& cache = *blocks_cache_[layer];
          copy.on_device(in[3].device_mem, 0, cache.in_mem(3), 0, old * kv_row_bytes_);
          copy.on_device(in[4].device_mem, 0, cache.in_mem(4), 0, old * kv_row_bytes_);
        }
        launch(net, in, out);
        store_kv(layer, out[1].device_mem, out[2].device_mem, real, old);
        copy.on_device(hidden_buf_.mem(), row0 * row_bytes, out[0].device_mem, 0, real * row_bytes);
      }
      add_deepstack(layer, row0, real);
    }
    history_ += static_cast<int>(real);
  }
}

int Engine::prefill(const std::vector<int32_t>& input_ids, const std::vector<int32_t>& position_ids,
                    const std::vector<VisionChunk>& vision, int next_position, const SamplingParams& params) {
  Call call(*this, /*keep_all_tokens=*/true);
  check_sampling(params);
  if (!supports_history()) clear_history();  // a new conversation every time
  check_input(input_ids.size(), vision);
  if (position_ids.size() != 3 * input_ids.size()) throw InputError("position_ids must have shape [3, tokens]");
  const size_t count = input_ids.size();
  auto start = Clock::now();
  device_seconds_ = &times_.prefill_device;
  embed(input_ids, 0);
  const double embed_seconds = seconds_since(start);
  start = Clock::now();
  device_seconds_ = &times_.vit_device;
  deepstack_active_ = info_.deepstack_layers > 0 && !vision.empty();
  if (deepstack_active_) clear_deepstack(count);
  for (const VisionChunk& chunk : vision) run_vision(chunk);
  times_.vit += seconds_since(start);

  start = Clock::now();
  device_seconds_ = &times_.prefill_device;
  if (layout_ == PrefillLayout::kStatic || layout_ == PrefillLayout::kHistoryOld) {
    prefill_full_static(count, position_ids);
  } else {
    const size_t rows = static_cast<size_t>(blocks_[0]->in_dim(0, 1));
    for (size_t row0 = 0; row0 < count; row0 += rows) {
      const size_t real = std::min(rows, count - row0);
      prefill_chunk(row0, real, position_ids, count);
      history_ += static_cast<int>(real);
    }
  }
  tokens_.insert(tokens_.end(), input_ids.begin(), input_ids.end());
  next_position_ = next_position;
  const size_t row_bytes = static_cast<size_t>(info_.hidden) * half_bytes_;
  const int token = head(mem_slice(hidden_buf_.mem(), (count - 1) * row_bytes, row_bytes), params);
  times_.prefill += seconds_since(start) + embed_seconds;
  call.commit();
  return token;
}

int Engine::decode(int token, const SamplingParams& params) {
  Call call(*this, /*keep_all_tokens=*/false);
  const int next = decode_step(token, params);
  call.commit();
  return next;
}

std::vector<int> Engine::generate(int first_token, int max_new_tokens, const std::vector<int>& stop_ids,
                                  const SamplingParams& params) {
  Call call(*this, /*keep_all_tokens=*/false);
  if (!handle_) throw InputError("the engine is closed");
  check_sampling(params);
  std::vector<int> tokens{first_token};
  auto stops = [&](int token) { return std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end(); };
  while (!stops(tokens.back()) && static_cast<int>(tokens.size()) < max_new_tokens && history_ < info_.seq_length)
    tokens.push_back(decode_step(tokens.back(), params));
  call.commit();
  return tokens;
}

// One decode step, inside a Call (decode or generate).
int Engine::decode_step(int token, const SamplingParams& params) {
  if (!handle_) throw InputError("the engine is closed");
  check_sampling(params);
  if (history_ + 1 > info_.seq_length)
    throw InputError("the conversation reached the bmodel's sequence length of " + std::to_string(info_.seq_length) +
                     " tokens");
  const auto start = Clock::now();
  device_seconds_ = &times_.decode_device;
  const Copier copy = copier();
  int current = 0;  // the token buffer holding the hidden state
  {
    auto in = embedding_cache_->input_tensors();
    auto out = embedding_cache_->output_tensors();
    out[0].device_mem = token_bufs_[current].mem();
    const int32_t id = token;
    const DeviceTurn turn(*this);
    copy.to_device(in[0].device_mem, &id, sizeof(id));
    launch(*embedding_cache_, in, out);
  }
  // The smallest stage whose history columns hold every cached token and this one.
  const Net& first = *blocks_cache_[0];
  int stage = 0, columns = 0;
  for (int s = 0; s < first.stages(); ++s) {
    const int c = first.in_dim(3, 1, s);
    if (c >= history_ + 1 && (columns == 0 || c < columns)) {
      stage = s;
      columns = c;
    }
  }
  const uint16_t masked = half_type_ == bm::kBFloat16 ? kBf16MaskValue : kF16MaskValue;
  const auto mask = decode_mask(columns, history_, masked);
  const int32_t positions[3] = {next_position_, next_position_, next_position_};
  // Engine-owned buffers: no turn needed to fill them.
  copy.to_device(step_positions_.mem(), positions, sizeof(positions));
  copy.to_device(step_mask_.mem(), mask.data(), mask.size() * sizeof(uint16_t));
  for (int layer = 0; layer < info_.layers; ++layer) {
    const Net& net = *blocks_cache_[layer];
    auto in = net.input_tensors(stage);
    auto out = net.output_tensors(stage);
    in[0].device_mem = token_bufs_[current].mem();
    in[1].device_mem = mem_slice(step_positions_.mem(), 0, sizeof(positions));
    in[2].device_mem = mem_slice(step_mask_.mem(), 0, mask.size() * sizeof(uint16_t));
    // History stays where it is (the cache is these inputs); the new row is written in place.
    in[3].device_mem = net.in_mem(3);
    in[4].device_mem = net.in_mem(4);
    current = 1 - current;
    out[0].device_mem = token_bufs_[current].mem();
    out[1].device_mem = mem_slice(net.in_mem(3), history_ * kv_row_bytes_, kv_row_bytes_);
    out[2].device_mem = mem_slice(net.in_mem(4), history_ * kv_row_bytes_, kv_row_bytes_);
    const DeviceTurn turn(*this);
    launch(net, in, out);
  }
  history_ += 1;
  next_position_ += 1;
  tokens_.push_back(token);
  const int next = head(token_bufs_[current].mem(), params);
  times_.decode += seconds_since(start);
  return next;
}

int Engine::head(const bm::DeviceMem& hidden_row, const SamplingParams& params) {
  const Copier copy = copier();
  const size_t row_bytes = static_cast<size_t>(info_.hidden) * half_bytes_;
  auto in = lm_head_->input_tensors();
  auto out = lm_head_->output_tensors();
  // One turn for the whole head: the logits stay in lm_head's output memory until a head net
  // or the host has read them.
  const DeviceTurn turn(*this);
  copy.on_device(in[0].device_mem, 0, hidden_row, 0, row_bytes);
  launch(*lm_head_, in, out);
  if (info_.lm_head_returns_token) {
    int32_t token = 0;
    copy.to_host(&token, out[0].device_mem, sizeof(token));
    return token;
  }
  const size_t logits_bytes = static_cast<size_t>(info_.vocab) * sizeof(float);
  if (!params.do_sample) {
    auto gin = greedy_head_->input_tensors();
    auto gout = greedy_head_->output_tensors();
    gin[0].shape = make_shape({1, info_.vocab});
    copy.on_device(gin[0].device_mem, 0, out[0].device_mem, 0, logits_bytes);
    launch(*greedy_head_, gin, gout);
    int32_t token = 0;
    copy.to_host(&token, gout[0].device_mem, sizeof(token));
    return token;
  }
  if (!sample_head_) throw InputError("this bmodel has no sample_head: turn sampling off");
  auto sin = sample_head_->input_tensors();
  auto sout = sample_head_->output_tensors();
  const int window = std::min<int>(static_cast<int>(tokens_.size()), sample_head_->in_dim(1, 1));
  std::vector<int32_t> recent(tokens_.end() - window, tokens_.end());
  if (recent.empty()) recent.push_back(0);
  sin[0].shape = make_shape({1, info_.vocab});
  sin[1].shape = make_shape({1, static_cast<int>(recent.size())});
  copy.on_device(sin[0].device_mem, 0, out[0].device_mem, 0, logits_bytes);
  copy.to_device(sin[1].device_mem, recent.data(), recent.size() * sizeof(int32_t));
  const float penalty = params.repetition_penalty, temperature = params.temperature, top_p = params.top_p;
  const int32_t top_k = std::max(1, std::min(params.top_k, sample_head_->out_dim(0, 1)));
  copy.to_device(sin[2].device_mem, &penalty, sizeof(float));
  copy.to_device(sin[3].device_mem, &temperature, sizeof(float));
  copy.to_device(sin[4].device_mem, &top_k, sizeof(int32_t));
  copy.to_device(sin[5].device_mem, &top_p, sizeof(float));
  launch(*sample_head_, sin, sout);
  // Its TopK takes K from the top_k input: only the first top_k of the max_top_k output slots
  // are written (the runtime writes the real output shape back), the rest is stale memory.
  const size_t candidates = std::min({element_count(sout[0].shape), static_cast<size_t>(top_k),
                                      static_cast<size_t>(sample_head_->out_dim(0, 1))});
  std::vector<float> probs(candidates);
  std::vector<int32_t> ids(candidates);
  copy.to_host(probs.data(), sout[0].device_mem, candidates * sizeof(float));
  copy.to_host(ids.data(), sout[1].device_mem, candidates * sizeof(int32_t));
  return sample(probs, ids);
}

int Engine::sample(const std::vector<float>& probs, const std::vector<int32_t>& ids) {
  double total = 0;
  for (float p : probs) total += std::max(0.0f, p);
  if (!(total > 0)) return ids[0];
  std::uniform_real_distribution<double> uniform(0.0, total);
  double pick = uniform(rng_);
  for (size_t i = 0; i < probs.size(); ++i) {
    pick -= std::max(0.0f, probs[i]);
    if (pick <= 0) return ids[i];
  }
  return ids.back();
}

}  // namespace streamproc
