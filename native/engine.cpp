// Engine construction: open the device, load the bmodel, read every size from its nets.
// Running the nets is in engine_run.cpp (prefill, decode, heads) and vision.cpp (the ViT).
#include "engine.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <mutex>

#include "bmodel_file.h"
#include "errors.h"

namespace streamproc {
namespace {

// bmrt_load_bmodel fills a process-wide weight cache; it is not documented as thread-safe.
std::mutex g_load_mutex;

// One lock per device id, shared by every engine on it (see DeviceTurn in engine.h). The map
// only grows, so the mutexes stay where they are for the life of the process.
std::mutex* device_mutex(int device_id) {
  static std::mutex guard;
  static std::map<int, std::mutex> mutexes;
  std::lock_guard<std::mutex> lock(guard);
  return &mutexes[device_id];
}

// Closed engines whose device memory is not freed yet (see Engine::close), per device id.
struct Parked {
  std::shared_ptr<const Runtime> runtime;
  bm::Handle handle = nullptr;
  void* bmrt = nullptr;
  std::vector<DeviceBuffer> buffers;
};
struct DeviceEngines {
  int open = 0;  // engines holding a device handle
  std::vector<Parked> parked;
};
std::mutex g_devices_mutex;
std::map<int, DeviceEngines> g_devices;

void free_parked(std::vector<Parked>& parked) {
  for (auto it = parked.rbegin(); it != parked.rend(); ++it) {  // newest first
    it->buffers.clear();
    if (it->bmrt) it->runtime->rt_destroy(it->bmrt);
    if (it->handle) it->runtime->dev_free(it->handle);
  }
  parked.clear();
}

// What bm_get_chipid says of the chips we know (0 = unknown: libbmrt decides alone).
std::string chip_of_id(unsigned int id) {
  switch (id) {
    case 0x1684: return "BM1684";
    case 0x1686: return "BM1684X";
    case 0x1686a200: return "BM1688";  // also CV186X, the same chip family
    default: return "";
  }
}

bool chips_compatible(const std::string& device, const std::string& bmodel) {
  if (device.empty() || bmodel.empty() || device == bmodel) return true;
  return device == "BM1688" && bmodel == "CV186X";
}

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string no_such_device(int device_id, int devices, const std::string& where) {
  std::string present = devices <= 0 ? "none" : devices == 1 ? "device 0" : "devices 0.." + std::to_string(devices - 1);
  return "TPU device " + std::to_string(device_id) + " does not exist: the runtime (" + where + ") sees " +
         std::to_string(devices < 0 ? 0 : devices) + " (" + present + ")";
}

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
  device_mutex_ = device_mutex(device_id);
  std::lock_guard<std::mutex> lock(g_load_mutex);
  // bmlib asserts (aborts the process) on a device id it does not have: ask first.
  const int devices = rt.device_count();
  if (device_id < 0 || device_id >= devices) throw DeviceError(no_such_device(device_id, devices, rt.bmlib_path));
  if (rt.dev_request(&handle_, device_id) != bm::kSuccess || !handle_) {
    handle_ = nullptr;
    throw DeviceError("cannot open TPU device " + std::to_string(device_id) + " with " + rt.bmlib_path);
  }
  device_id_ = device_id;
  {
    std::lock_guard<std::mutex> devices(g_devices_mutex);
    ++g_devices[device_id].open;
  }
  try {
    // libbmrt checks the chip too, but only prints why it refuses: say it ourselves.
    unsigned int chip_id = 0;
    const std::string device_chip = rt.get_chipid(handle_, &chip_id) == bm::kSuccess ? chip_of_id(chip_id) : "";
    if (!chips_compatible(device_chip, file.chip)) {
      throw BmodelError(bmodel_path + ": the bmodel is built for " + file.chip + ", but the device is a " + device_chip +
                        " (runtime " + rt.bmrt_path + "): use a bmodel converted for " + device_chip +
                        " or a runtime for " + file.chip + " (the CPU simulator needs libcmodel_" +
                        lowercase(file.chip) + ".so as libcmodel.so)");
    }
    d2d_via_host_ = rt.simulator && device_chip == "BM1688";
    bmrt_ = rt.rt_create(handle_);
    if (!bmrt_) throw DeviceError("bmrt_create failed on device " + std::to_string(device_id));
    // Shared neuron memory, set before loading. libbmrt sets it by default only on single-core
    // chips; without it, a multi-core chip's (BM1688's) net infos hold the bmodel's own
    // addresses, not device memory, and launching on them fails in the firmware. Only set it
    // when missing: 1.30.2's bmrt_set_flags does more than store the value (set_flags(1) reads
    // back as 5), and BM1684X engines set up that way return garbage on static and 1.21 bmodels.
    const uint32_t flags = rt.rt_get_flags(bmrt_);
    if (!(flags & bm::kShareMem)) rt.rt_set_flags(bmrt_, flags | bm::kShareMem);
    if (!rt.rt_load_bmodel(bmrt_, bmodel_path.c_str())) {
      throw BmodelError(bmodel_path + ": the runtime refused the bmodel" +
                        (file.chip.empty() ? std::string() : " (built for " + file.chip + ")") +
                        "; if the device or simulator is another chip, use a bmodel built for it "
                        "(libcmodel_bm1688 runs BM1688 bmodels), else the file may be damaged");
    }
    try {
      inspect_nets();
    } catch (const BmodelError& error) {
      throw BmodelError(bmodel_path + ": " + error.what());
    }
    hidden_buf_ = DeviceBuffer(runtime_.get(), handle_, static_cast<size_t>(info_.seq_length) * info_.hidden * half_bytes_);
    for (DeviceBuffer& buffer : token_bufs_)
      buffer = DeviceBuffer(runtime_.get(), handle_, static_cast<size_t>(info_.hidden) * half_bytes_);
    step_positions_ = DeviceBuffer(runtime_.get(), handle_, 3 * sizeof(int32_t));
    step_mask_ = DeviceBuffer(runtime_.get(), handle_, (static_cast<size_t>(info_.seq_length) + 1) * half_bytes_);
    for (int layer = 0; layer < info_.deepstack_layers; ++layer)
      deepstack_bufs_.emplace_back(runtime_.get(), handle_, hidden_buf_.bytes());
    // Padded prefill rows and unwritten cache rows are read (then masked): keep them finite.
    const Copier copy = copier();
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
  // A call running in another thread stops at its next check; wait for it to leave.
  abort();
  const std::lock_guard<std::mutex> call(call_mutex_);
  // Not in the middle of another engine's step: libbmrt may share memory between runtimes.
  std::unique_lock<std::mutex> turn;
  if (device_mutex_) turn = std::unique_lock<std::mutex>(*device_mutex_);
  if (handle_) {
    // Freeing one engine's device memory while other engines on the device live fragments it,
    // and libbmrt 1.30.2 then lays out bmodels loaded later wrongly: with three engines open
    // and two closed, a static bmodel loaded next computed garbage (all-zero tokens) on the
    // simulator, while the same nets on an unfragmented device were exact. So a closed engine's
    // runtime, handle and buffers are parked and freed together, newest first, when the last
    // engine on the device closes; until then they stay allocated (a service opens its engines
    // at start and closes them at exit, so nothing accumulates).
    Parked parked{runtime_, handle_, bmrt_, {}};
    parked.buffers.push_back(std::move(hidden_buf_));
    for (DeviceBuffer& buffer : token_bufs_) parked.buffers.push_back(std::move(buffer));
    parked.buffers.push_back(std::move(step_positions_));
    parked.buffers.push_back(std::move(step_mask_));
    for (DeviceBuffer& buffer : deepstack_bufs_) parked.buffers.push_back(std::move(buffer));
    deepstack_bufs_.clear();
    std::vector<Parked> to_free;
    {
      std::lock_guard<std::mutex> devices(g_devices_mutex);
      DeviceEngines& device = g_devices[device_id_];
      device.parked.push_back(std::move(parked));
      if (--device.open == 0) to_free.swap(device.parked);
    }
    free_parked(to_free);
  }
  bmrt_ = nullptr;
  handle_ = nullptr;
  nets_.clear();
  blocks_.clear();
  blocks_kv_.clear();
  blocks_cache_.clear();
}

std::vector<MemRegion> Engine::memory_map() const {
  std::vector<MemRegion> out;
  auto add = [&](const std::string& label, const bm::DeviceMem& mem, bool own) {
    if (mem.size) out.push_back(MemRegion{label, mem.device_addr, mem.size, own});
  };
  add("hidden", hidden_buf_.mem(), true);
  add("token 0", token_bufs_[0].mem(), true);
  add("token 1", token_bufs_[1].mem(), true);
  add("step positions", step_positions_.mem(), true);
  add("step mask", step_mask_.mem(), true);
  for (size_t layer = 0; layer < blocks_cache_.size(); ++layer) {
    add("kv_cache " + std::to_string(layer) + " k", blocks_cache_[layer]->in_mem(3), true);
    add("kv_cache " + std::to_string(layer) + " v", blocks_cache_[layer]->in_mem(4), true);
  }
  for (const auto& entry : nets_) {
    const Net& net = entry.second;
    for (int stage = 0; stage < net.stages(); ++stage) {
      const std::string where = " (stage " + std::to_string(stage) + ")";
      for (int i = 0; i < net.inputs(); ++i)
        add("net " + entry.first + " in " + std::to_string(i) + where, net.in_mem(i, stage), false);
      for (int i = 0; i < net.outputs(); ++i)
        add("net " + entry.first + " out " + std::to_string(i) + where, net.out_mem(i, stage), false);
    }
  }
  return out;
}

void Engine::inspect_vit() {
  vit_family_ = VitFamily::detect(*vit_);
  info_.family = vit_family_->name();
  info_.max_patches = vit_->in_dim(0, 0);
  info_.patch_features = vit_->in_dim(0, 1);
  info_.vit_dynamic = vit_->dynamic();
  info_.vit_masked = vit_family_->masked();
  info_.deepstack_layers = vit_family_->deepstack_layers();
  for (int i = 0; i < vit_->outputs(); ++i)
    if (vit_->out_dim(i, 1) != info_.hidden)
      throw BmodelError("unexpected vit net for a hidden size of " + std::to_string(info_.hidden) + ": " + vit_->describe());
  if (info_.deepstack_layers > 0) {
    // DeepStack adds through the `add` net, whose inputs hold max_input rows of the hidden states.
    if (!add_ || add_->inputs() != 2 || static_cast<int>(element_count(add_->in_shape(0))) < info_.max_input * info_.hidden)
      throw BmodelError("a Qwen3-VL bmodel needs an add net of max_input x hidden values for DeepStack" +
                        (add_ ? ": " + add_->describe() : std::string(", it has none")));
    if (add_->in_dtype(0) != half_type_) throw BmodelError("unexpected add net type: " + add_->describe());
  }
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
  add_ = find("add");
  if (!embedding_ || !embedding_cache_ || !lm_head_ || !vit_ || layers == 0 || cache_layers != layers) {
    throw BmodelError("not a Qwen2.5-VL or Qwen3-VL bmodel: expected nets embedding, embedding_cache, vit, block_N, "
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
  inspect_layout(kv_layers > 0);
}

// The prefill layout, the half type and every size, from the block, cache, embedding, vit and
// head nets (after inspect_nets found them).
void Engine::inspect_layout(bool kv_nets) {
  const Net& block = *blocks_[0];
  if (kv_nets) {
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
  inspect_vit();
  info_.lm_head_returns_token = lm_head_->out_dtype(0) == bm::kInt32;
  if (!info_.lm_head_returns_token) {
    info_.vocab = lm_head_->out_dim(0, lm_head_->out_shape(0).num_dims - 1);
    if (!greedy_head_) throw BmodelError("lm_head returns logits but the bmodel has no greedy_head net");
  }
  info_.has_sample_head = sample_head_ != nullptr && !info_.lm_head_returns_token;
  info_.supports_history = supports_history();
  info_.runtime = runtime_->bmrt_path;
}

}  // namespace streamproc
