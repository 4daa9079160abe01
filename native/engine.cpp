// Engine construction: open the device, load the bmodel, read every size from its nets.
// Running the nets is in engine_run.cpp (prefill, decode, heads) and vision.cpp (the ViT).
#include "engine.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "bmodel_file.h"
#include "errors.h"

namespace streamproc {
namespace {

// bmrt_load_bmodel fills a process-wide weight cache; it is not documented as thread-safe.
std::mutex g_load_mutex;

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.compare(0, prefix.size(), prefix) == 0;
}

// block_3 -> 3 for the given prefix, -1 when the name is not prefix + number.
int block_index(const std::string& name, const std::string& prefix) {
  if (!starts_with(name, prefix) || name.size() == prefix.size()) return -1;
  const std::string digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::atoi(digits.c_str());
}

}  // namespace

Engine::Engine(const std::string& bmodel_path, int device_id, const std::string& runtime_dir) {
  const BmodelFile file = check_bmodel_file(bmodel_path);
  runtime_ = Runtime::get(runtime_dir);
  const Runtime& rt = *runtime_;
  info_.chip = file.chip;
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (rt.dev_request(&handle_, device_id) != bm::kSuccess || !handle_) {
    handle_ = nullptr;
    throw DeviceError("cannot open TPU device " + std::to_string(device_id) + " with " + rt.bmlib_path);
  }
  try {
    bmrt_ = rt.rt_create(handle_);
    if (!bmrt_) throw DeviceError("bmrt_create failed on device " + std::to_string(device_id));
    if (!rt.rt_load_bmodel(bmrt_, bmodel_path.c_str())) {
      throw BmodelError(bmodel_path + ": the runtime refused the bmodel" +
                        (file.chip.empty() ? std::string() : " (built for " + file.chip + ")") +
                        "; if the device or simulator is another chip, use a bmodel built for it "
                        "(libcmodel_bm1688 runs BM1688 bmodels), else the file may be damaged");
    }
    inspect_nets();
    hidden_buf_ = DeviceBuffer(runtime_.get(), handle_, static_cast<size_t>(info_.seq_length) * info_.hidden * half_bytes_);
    token_buf_ = DeviceBuffer(runtime_.get(), handle_, static_cast<size_t>(info_.hidden) * half_bytes_);
    // Padded prefill rows and unwritten cache rows are read (then masked): keep them finite.
    const Copier copy{runtime_.get(), handle_};
    std::vector<uint8_t> zeros(hidden_buf_.bytes(), 0);
    copy.to_device(hidden_buf_.mem(), zeros.data(), zeros.size());
    zeros.assign(kv_row_bytes_ * info_.seq_length, 0);
    for (Net* net : blocks_cache_) {
      copy.to_device(net->in_mem(3), zeros.data(), zeros.size());
      copy.to_device(net->in_mem(4), zeros.data(), zeros.size());
    }
  } catch (...) {
    close();
    throw;
  }
}

Engine::~Engine() { close(); }

void Engine::close() {
  hidden_buf_.reset();
  token_buf_.reset();
  if (bmrt_) runtime_->rt_destroy(bmrt_);
  bmrt_ = nullptr;
  if (handle_) runtime_->dev_free(handle_);
  handle_ = nullptr;
  nets_.clear();
  blocks_.clear();
  blocks_kv_.clear();
  blocks_cache_.clear();
}

bool Engine::supports_history() const {
  return layout_ == PrefillLayout::kHistoryNew || layout_ == PrefillLayout::kHistoryOld;
}

void Engine::inspect_nets() {
  const Runtime& rt = *runtime_;
  const char** names = nullptr;
  const int count = rt.rt_get_network_number(bmrt_);
  rt.rt_get_network_names(bmrt_, &names);
  for (int i = 0; i < count && names; ++i) {
    const bm::NetInfo* net = rt.rt_get_network_info(bmrt_, names[i]);
    if (net) nets_.emplace(names[i], Net(net));
    info_.nets.push_back(names[i]);
  }
  std::free(names);  // the runtime allocates the array; the caller frees it

  auto find = [&](const std::string& name) -> Net* {
    auto it = nets_.find(name);
    return it == nets_.end() ? nullptr : &it->second;
  };
  embedding_ = find("embedding");
  embedding_cache_ = find("embedding_cache");
  lm_head_ = find("lm_head");
  vit_ = find("vit");
  greedy_head_ = find("greedy_head");
  sample_head_ = find("sample_head");
  int layers = 0, kv_layers = 0, cache_layers = 0;
  for (const auto& entry : nets_) {
    layers = std::max(layers, block_index(entry.first, "block_") + 1);
    kv_layers = std::max(kv_layers, block_index(entry.first, "block_kv_") + 1);
    cache_layers = std::max(cache_layers, block_index(entry.first, "block_cache_") + 1);
  }
  std::string listed;
  for (const auto& name : info_.nets) listed += (listed.empty() ? "" : ", ") + name;
  if (!embedding_ || !embedding_cache_ || !lm_head_ || !vit_ || layers == 0 || cache_layers != layers) {
    throw BmodelError("not a Qwen2.5-VL bmodel: expected nets embedding, embedding_cache, vit, block_N, "
                      "block_cache_N and lm_head, found " + listed);
  }
  for (int i = 0; i < layers; ++i) {
    Net* block = find("block_" + std::to_string(i));
    Net* cache = find("block_cache_" + std::to_string(i));
    if (!block || !cache) throw BmodelError("incomplete bmodel: layer " + std::to_string(i) + " is missing (" + listed + ")");
    blocks_.push_back(block);
    blocks_cache_.push_back(cache);
    if (kv_layers) {
      Net* kv = find("block_kv_" + std::to_string(i));
      if (!kv) throw BmodelError("incomplete bmodel: block_kv_" + std::to_string(i) + " is missing");
      blocks_kv_.push_back(kv);
    }
  }
  info_.layers = layers;

  const Net& block = *blocks_[0];
  if (kv_layers) {
    layout_ = PrefillLayout::kHistoryNew;
  } else if (block.inputs() == 5) {
    layout_ = PrefillLayout::kHistoryOld;
  } else if (block.inputs() == 3) {
    layout_ = PrefillLayout::kStatic;
  } else if (block.inputs() == 2 && block.dynamic()) {
    layout_ = PrefillLayout::kDynamic;
  } else {
    throw BmodelError("unsupported prefill block layout: " + block.describe());
  }
  static const char* kLayoutNames[] = {"static", "dynamic", "history", "history-old"};
  info_.layout = kLayoutNames[static_cast<int>(layout_)];
  info_.prefill_dynamic = block.dynamic();

  half_type_ = static_cast<bm::DataType>(embedding_->out_dtype(0));
  if (half_type_ != bm::kBFloat16 && half_type_ != bm::kFloat16)
    throw BmodelError("unsupported embedding output type " + std::string(dtype_name(half_type_)));
  half_bytes_ = dtype_size(half_type_);
  info_.max_input = embedding_->in_dim(0, 1);
  info_.hidden = embedding_->out_dim(0, 2);
  const Net& cache = *blocks_cache_[0];
  if (cache.inputs() != 5 || cache.outputs() != 3) throw BmodelError("unexpected decode block: " + cache.describe());
  for (int s = 0; s < cache.stages(); ++s) info_.seq_length = std::max(info_.seq_length, cache.in_dim(3, 1, s));
  info_.decode_stages = cache.stages();
  info_.kv_heads = cache.in_dim(3, 2);
  info_.head_dim = cache.in_dim(3, 3);
  if (cache.in_dtype(3) != half_type_) throw BmodelError("unexpected KV cache type in " + cache.describe());
  kv_row_bytes_ = static_cast<size_t>(info_.kv_heads) * info_.head_dim * half_bytes_;
  if (layout_ == PrefillLayout::kHistoryOld) info_.max_history = block.in_dim(3, 1);
  info_.max_patches = vit_->in_dim(0, 0);
  info_.vit_dynamic = vit_->dynamic();
  if (vit_->inputs() != 5 || vit_->out_dim(0, 1) != info_.hidden)
    throw BmodelError("unexpected vit net for a hidden size of " + std::to_string(info_.hidden) + ": " + vit_->describe());
  info_.lm_head_returns_token = lm_head_->out_dtype(0) == bm::kInt32;
  if (!info_.lm_head_returns_token) {
    info_.vocab = lm_head_->out_dim(0, lm_head_->out_shape(0).num_dims - 1);
    if (!greedy_head_) throw BmodelError("lm_head returns logits but the bmodel has no greedy_head net");
  }
  info_.has_sample_head = sample_head_ != nullptr && !info_.lm_head_returns_token;
}

}  // namespace streamproc
