#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <vector>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"

namespace dsmoe {

namespace fs = std::filesystem;

namespace {

constexpr const char* kComplete = "COMPLETE";
constexpr const char* kOptimizer = "optimizer.safetensors";
constexpr const char* kState = "state.json";
constexpr const char* kTmpPrefix = ".tmp-";

std::string errno_str() { return std::strerror(errno); }

std::string step_dir_name(int64_t step) { return fmt::format("step-{:08d}", step); }

// The step of a "step-N" directory name; nullopt for anything else (temporaries, stray files).
std::optional<int64_t> parse_step(const std::string& name) {
  if (!name.starts_with("step-")) return std::nullopt;
  int64_t step = 0;
  const char* begin = name.data() + 5;
  const char* end = name.data() + name.size();
  const auto [p, ec] = std::from_chars(begin, end, step);
  if (ec != std::errc() || p != end || begin == end || *begin == '-' || *begin == '+') return std::nullopt;
  return step;
}

// The last component of a directory path, also when it is spelled with a trailing slash.
std::string dir_name(const fs::path& p) { return (p.has_filename() ? p : p.parent_path()).filename().string(); }

bool is_complete(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kComplete, ec);
}

// fsync a file or a directory. A new file or a rename is durable only once its directory is synced as well.
void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open {} to fsync it: {}", p.string(), errno_str());
  const int rc = ::fsync(fd);
  const std::string err = rc != 0 ? errno_str() : "";
  ::close(fd);
  check(rc == 0, "fsync failed for {}: {}", p.string(), err);
}

// Write a small text file and fsync it; every failure (ENOSPC, EFBIG, EIO at fsync or close) throws.
void write_file_synced(const fs::path& p, const std::string& text) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create {}: {}", p.string(), errno_str());
  std::string err;
  for (size_t done = 0; done < text.size() && err.empty();) {
    const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      err = w < 0 ? errno_str() : "no progress";
    } else {
      done += static_cast<size_t>(w);
    }
  }
  if (err.empty() && ::fsync(fd) != 0) err = errno_str();
  if (::close(fd) != 0 && err.empty()) err = errno_str();
  check(err.empty(), "write failed for {}: {}", p.string(), err);
}

// " (disk full?)" when an error message names one of the out-of-space errnos, so the hint is never misleading.
std::string disk_full_hint(const std::string& message) {
  if (message.find("disk full") != std::string::npos) return "";
  for (int e : {ENOSPC, EDQUOT, EFBIG})
    if (message.find(std::strerror(e)) != std::string::npos) return " (disk full?)";
  return "";
}

// "field: checkpoint X, model Y" for the first config.json field that differs.
std::string config_difference(const ModelConfig& saved, const ModelConfig& current) {
  const nlohmann::json a = config_to_json(saved), b = config_to_json(current);
  for (const auto& [key, value] : a.items()) {
    const auto it = b.find(key);
    if (it == b.end() || *it != value)
      return fmt::format("{}: checkpoint {}, model {}", key, value.dump(), it == b.end() ? "absent" : it->dump());
  }
  for (const auto& [key, value] : b.items())
    if (!a.contains(key)) return fmt::format("{}: checkpoint absent, model {}", key, value.dump());
  return "no field differs";
}

// Write every file of checkpoint `step` into the (fresh) directory `dir`, COMPLETE last, all of it fsynced.
void write_checkpoint_files(const fs::path& dir, int64_t step, const Model& model, const AdamW& optimizer,
                            const std::string& state_text) {
  fs::create_directory(dir);
  model_save(model, dir.string(), io::DType::F32);

  std::vector<io::TensorToWrite> moments;
  for (const auto& [prefix, buffer] : {std::pair{"m.", &optimizer.m}, std::pair{"v.", &optimizer.v}})
    for (const TensorSpec& spec : model.params.registry)
      moments.push_back({prefix + spec.name, spec.shape, buffer->data() + spec.offset});
  // The step goes in the metadata: a string keeps the int64 exact (safetensors integers here are I32 only).
  io::write_safetensors((dir / kOptimizer).string(), moments, io::DType::F32,
                        {{"step", std::to_string(optimizer.step)}});

  write_file_synced(dir / kState, state_text);
  // model_save's config.json is not fsynced by it; syncing everything again is cheap next to the data itself.
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) fsync_path(e.path());
  write_file_synced(dir / kComplete, fmt::format("step {}\n", step));
  fsync_path(dir);
}

// Move the finished temporary directory to its final name. A checkpoint of the same step already there (re-saved
// after a resume, RUN/latest may point at it) is swapped out atomically, so RUN/latest never dangles, then deleted.
void install_dir(const fs::path& tmp, const fs::path& final_dir) {
  if (::rename(tmp.c_str(), final_dir.c_str()) == 0) return;
  if (errno != EEXIST && errno != ENOTEMPTY)
    fail("cannot rename {} to {}: {}", tmp.string(), final_dir.string(), errno_str());
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0) {
    if (errno != EINVAL && errno != ENOSYS)
      fail("cannot exchange {} with {}: {}", tmp.string(), final_dir.string(), errno_str());
    // Filesystem without RENAME_EXCHANGE: delete, then rename (checkpoint_latest's scan covers the short gap).
    fs::remove_all(final_dir);
    if (::rename(tmp.c_str(), final_dir.c_str()) != 0)
      fail("cannot rename {} to {}: {}", tmp.string(), final_dir.string(), errno_str());
    return;
  }
  fs::remove_all(tmp);  // now holds the old checkpoint
}

// Re-point RUN/latest by renaming a new symlink over it: readers see the old target or the new, never neither.
void point_latest(const fs::path& run, const std::string& target) {
  const fs::path tmp = run / "latest.tmp", latest = run / "latest";
  fs::remove(tmp);
  fs::create_symlink(target, tmp);
  if (::rename(tmp.c_str(), latest.c_str()) != 0)
    fail("cannot rename {} to {}: {}", tmp.string(), latest.string(), errno_str());
  fsync_path(run);
}

// Delete stale temporaries and all but the keep-1 newest complete checkpoints besides `saved`. Best effort: a
// leftover old checkpoint is harmless, so errors are ignored. A victim is first renamed to a temporary name (one
// atomic step), so a kill mid-deletion never leaves a half-deleted directory that still looks complete.
void prune(const fs::path& ckdir, int64_t saved, int keep) {
  std::vector<fs::path> stale;
  std::vector<std::pair<int64_t, fs::path>> others;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(ckdir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(kTmpPrefix))
      stale.push_back(e.path());
    else if (const auto step = parse_step(name); step && *step != saved && is_complete(e.path()))
      others.emplace_back(*step, e.path());
  }
  std::sort(others.begin(), others.end(), std::greater<>());
  for (size_t i = static_cast<size_t>(keep - 1); i < others.size(); ++i) {
    const fs::path victim = ckdir / (kTmpPrefix + std::string("delete-") + others[i].second.filename().string());
    fs::rename(others[i].second, victim, ec);
    if (!ec) stale.push_back(victim);
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

}  // namespace

void checkpoint_save(const std::string& run_dir, int64_t step, const Model& model, const AdamW& optimizer,
                     const nlohmann::json& state, int keep) {
  check(keep >= 1, "checkpoint step {}: keep must be >= 1, got {}", step, keep);
  check(step >= 0, "checkpoint step {}: the step must be >= 0", step);
  check(optimizer.m.size() == model.params.arena.size() && optimizer.v.size() == model.params.arena.size(),
        "checkpoint step {}: the optimizer's moments ({} floats) do not match the model ({} parameters)", step,
        optimizer.m.size(), model.params.arena.size());
  const std::string state_text = state.dump(2) + "\n";
  const fs::path run(run_dir), ckdir = run / "checkpoints";
  const std::string name = step_dir_name(step);
  const fs::path tmp = ckdir / (kTmpPrefix + name), final_dir = ckdir / name;

  try {
    fs::create_directories(ckdir);
    fs::remove_all(tmp);  // left by a save that was killed
    write_checkpoint_files(tmp, step, model, optimizer, state_text);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fail("checkpoint step {}: write failed, previous checkpoints kept: {}{}", step, e.what(), disk_full_hint(e.what()));
  }
  try {
    install_dir(tmp, final_dir);
    fsync_path(ckdir);
    point_latest(run, "checkpoints/" + name);  // relative: the run directory can be moved
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fail("checkpoint step {}: cannot install {}: {}", step, final_dir.string(), e.what());
  }
  prune(ckdir, step, keep);
}

std::string checkpoint_latest(const std::string& run_dir) {
  const fs::path run(run_dir);
  std::error_code ec;
  const fs::path target = fs::read_symlink(run / "latest", ec);
  if (!ec) {
    const fs::path dir = target.is_absolute() ? target : run / target;
    if (parse_step(dir_name(dir)) && is_complete(dir)) return dir.string();
  }
  // No usable link (never written, or killed between installing a checkpoint and re-linking): scan.
  std::optional<std::pair<int64_t, fs::path>> best;
  for (const fs::directory_entry& e : fs::directory_iterator(run / "checkpoints", ec)) {
    const auto step = parse_step(e.path().filename().string());
    if (step && is_complete(e.path()) && (!best || *step > best->first)) best.emplace(*step, e.path());
  }
  return best ? best->second.string() : "";
}

nlohmann::json checkpoint_load(const std::string& checkpoint_dir, Model& model, AdamW& optimizer) {
  const fs::path dir(checkpoint_dir);
  check(fs::is_directory(dir), "checkpoint {} does not exist", checkpoint_dir);
  // A temporary may already hold COMPLETE (killed just before its rename) but was never installed.
  check(!dir_name(dir).starts_with(kTmpPrefix), "checkpoint {} is the temporary directory of an unfinished save",
        checkpoint_dir);
  check(is_complete(dir), "checkpoint {} is incomplete (no {} marker: the save was interrupted)", checkpoint_dir,
        kComplete);

  const ModelConfig saved = config_from_file((dir / "config.json").string());
  check(saved == model.config, "checkpoint {}: config.json differs from the model's config ({})", checkpoint_dir,
        config_difference(saved, model.config));

  // Checkpoints hold F32 only; anything else would not restore bit-identical parameters.
  const io::SafetensorsArchive weights = io::SafetensorsArchive::open(checkpoint_dir);
  for (const io::TensorInfo& t : weights.tensors())
    check(t.dtype == io::DType::F32, "{}: tensor {} is {}, a checkpoint stores F32", t.file, t.name,
          io::dtype_name(t.dtype));
  model_load_weights(model, weights);

  const io::SafetensorsArchive moments = io::SafetensorsArchive::open((dir / kOptimizer).string());
  const std::vector<TensorSpec>& registry = model.params.registry;
  check(moments.tensors().size() == 2 * registry.size(), "{}: holds {} tensors, expected {} (m and v per tensor)",
        moments.path(), moments.tensors().size(), 2 * registry.size());
  check(optimizer.m.size() == model.params.arena.size() && optimizer.v.size() == model.params.arena.size(),
        "checkpoint {}: the optimizer's moments ({} floats) do not match the model ({} parameters)", checkpoint_dir,
        optimizer.m.size(), model.params.arena.size());
  for (auto [prefix, buffer] : {std::pair{"m.", &optimizer.m}, std::pair{"v.", &optimizer.v}}) {
    for (const TensorSpec& spec : registry) {
      const io::TensorInfo& t = moments.get(prefix + spec.name);  // with the count check: no extras either
      check(t.dtype == io::DType::F32 && t.shape == spec.shape, "{}: tensor {} is {} {}, expected F32 {}", t.file,
            t.name, io::dtype_name(t.dtype), shape_str(t.shape), shape_str(spec.shape));
      moments.read_f32(t, buffer->data() + spec.offset);
    }
  }
  const auto it = moments.metadata().find("step");
  check(it != moments.metadata().end(), "{}: metadata has no \"step\"", moments.path());
  int64_t step = 0;
  const auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), step);
  check(ec == std::errc() && end == it->second.data() + it->second.size() && step >= 0,
        "{}: metadata \"step\" is not a non-negative integer: '{}'", moments.path(), it->second);
  optimizer.step = step;

  const fs::path state_path = dir / kState;
  std::ifstream in(state_path);
  check(in.good(), "cannot open {}", state_path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", state_path.string(), e.what());
  }
}

}  // namespace dsmoe
