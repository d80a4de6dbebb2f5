// Training checkpoints: exact round trip, retention, crash leftovers (incomplete and temporary directories, a
// dangling RUN/latest) and a write failure in the middle of a save (RLIMIT_FSIZE stands in for a full disk).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "expect_error.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;
using namespace dsmoe;
using namespace dsmoe::testing;
using json = nlohmann::json;

namespace {

bool same_bits(const FloatBuffer& a, const FloatBuffer& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A model with random weights and an optimizer with random moments and a step, as after some training.
struct TrainState {
  std::unique_ptr<Model> model;
  AdamW opt;
  TrainState(uint64_t seed) : model(random_model(tiny_config(), seed)), opt(model->params, AdamWOptions{}) {
    const auto m = random_vector(static_cast<int64_t>(opt.m.size()), 0.01f, seed + 1);
    const auto v = random_vector(static_cast<int64_t>(opt.v.size()), 1e-4f, seed + 2);
    std::memcpy(opt.m.data(), m.data(), m.size() * sizeof(float));
    for (size_t i = 0; i < v.size(); ++i) opt.v[i] = v[i] * v[i];
    // Values a lossy path would change: negative zero, a subnormal, the extremes.
    opt.m[0] = -0.0f;
    opt.m[1] = std::numeric_limits<float>::denorm_min();
    opt.v[2] = std::numeric_limits<float>::max();
    opt.step = 3'000'000'000;  // beyond int32
  }
};

// Restores the previous limit and SIGXFSZ disposition on scope exit.
struct FileSizeLimit {
  rlimit old{};
  sighandler_t old_handler;
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler = ::signal(SIGXFSZ, SIG_IGN);  // writes past the limit then fail with EFBIG instead of killing us
    ::getrlimit(RLIMIT_FSIZE, &old);
    rlimit lim = old;
    lim.rlim_cur = bytes;
    EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
  }
};

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    run = fs::temp_directory_path() / fmt::format("dsmoe_test_ckpt_{}_{}", info->name(), ::getpid());
    fs::remove_all(run);
  }
  void TearDown() override { fs::remove_all(run); }

  std::string step_dir(int64_t step) const { return (run / "checkpoints" / fmt::format("step-{:08d}", step)).string(); }
  std::set<std::string> entries() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(run / "checkpoints")) names.insert(e.path().filename().string());
    return names;
  }
  // Load a checkpoint into a fresh model + optimizer and check it equals `expected` bit for bit.
  void expect_loads(const std::string& dir, const TrainState& expected, const json& state) const {
    Model model(tiny_config());
    AdamW opt(model.params, AdamWOptions{});
    EXPECT_EQ(checkpoint_load(dir, model, opt), state);
    EXPECT_TRUE(same_bits(model.params.arena, expected.model->params.arena));
    EXPECT_TRUE(same_bits(opt.m, expected.opt.m));
    EXPECT_TRUE(same_bits(opt.v, expected.opt.v));
    EXPECT_EQ(opt.step, expected.opt.step);
  }

  fs::path run;
};

}  // namespace

TEST_F(Checkpoint, RoundTripIsBitIdenticalAndAnHFDirectory) {
  TrainState ts(1);
  const json state = {{"step", 17}, {"rng", 18446744073709551615ull}, {"data", {{"shard", 2}, {"offset", 12345}}}};
  EXPECT_EQ(checkpoint_latest(run.string()), "");
  checkpoint_save(run.string(), 17, *ts.model, ts.opt, state, 3);

  EXPECT_EQ(checkpoint_latest(run.string()), step_dir(17));
  EXPECT_EQ(fs::read_symlink(run / "latest"), "checkpoints/step-00000017");
  expect_loads(step_dir(17), ts, state);

  // The HF loader reads it as a plain model directory.
  const auto hf = model_load(step_dir(17));
  EXPECT_TRUE(hf->config == ts.model->config);
  EXPECT_TRUE(same_bits(hf->params.arena, ts.model->params.arena));
}

TEST_F(Checkpoint, KeepsTheNewestK) {
  TrainState ts(2);
  for (int step = 1; step <= 5; ++step) checkpoint_save(run.string(), step, *ts.model, ts.opt, {{"step", step}}, 2);
  EXPECT_EQ(entries(), (std::set<std::string>{"step-00000004", "step-00000005"}));
  EXPECT_EQ(checkpoint_latest(run.string()), step_dir(5));
  EXPECT_FALSE(fs::exists(run / "latest.tmp"));
}

TEST_F(Checkpoint, ResavingAStepReplacesIt) {
  TrainState ts(3);
  checkpoint_save(run.string(), 4, *ts.model, ts.opt, {{"try", 1}}, 1);
  checkpoint_save(run.string(), 4, *ts.model, ts.opt, {{"try", 2}}, 1);  // latest points at the one replaced
  EXPECT_EQ(entries(), std::set<std::string>{"step-00000004"});
  expect_loads(checkpoint_latest(run.string()), ts, {{"try", 2}});
}

TEST_F(Checkpoint, IncompleteAndTemporaryDirectoriesAreIgnoredAndRefused) {
  TrainState ts(4);
  checkpoint_save(run.string(), 1, *ts.model, ts.opt, {{"step", 1}}, 5);
  // Leftovers of a save killed before COMPLETE, and of one killed just before its rename (COMPLETE present).
  fs::copy(step_dir(1), step_dir(9));
  fs::remove(fs::path(step_dir(9)) / "COMPLETE");
  const fs::path tmp = run / "checkpoints" / ".tmp-step-00000010";
  fs::copy(step_dir(1), tmp);

  EXPECT_EQ(checkpoint_latest(run.string()), step_dir(1));
  fs::remove(run / "latest");  // the scan must skip them too
  EXPECT_EQ(checkpoint_latest(run.string()), step_dir(1));

  Model model(tiny_config());
  AdamW opt(model.params, AdamWOptions{});
  expect_error([&] { checkpoint_load(step_dir(9), model, opt); }, {"step-00000009", "incomplete", "COMPLETE"});
  expect_error([&] { checkpoint_load(tmp.string() + "/", model, opt); }, {".tmp-step-00000010", "unfinished save"});

  // The next save clears the stale temporary.
  checkpoint_save(run.string(), 2, *ts.model, ts.opt, {{"step", 2}}, 5);
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(checkpoint_latest(run.string()), step_dir(2));
}

TEST_F(Checkpoint, DanglingLatestFallsBackToNewestComplete) {
  TrainState ts(5);
  for (int step = 1; step <= 3; ++step) checkpoint_save(run.string(), step, *ts.model, ts.opt, {{"step", step}}, 3);
  fs::remove_all(step_dir(3));  // latest -> deleted directory
  EXPECT_EQ(checkpoint_latest(run.string()), step_dir(2));
  fs::remove(fs::path(step_dir(2)) / "COMPLETE");
  fs::remove(run / "latest");
  fs::create_symlink("checkpoints/step-00000002", run / "latest");  // latest -> incomplete directory
  EXPECT_EQ(checkpoint_latest(run.string()), step_dir(1));
  expect_loads(checkpoint_latest(run.string()), ts, {{"step", 1}});
}

TEST_F(Checkpoint, WriteFailureKeepsThePreviousCheckpoint) {
  TrainState ts(6);
  const json state1 = {{"step", 1}};
  checkpoint_save(run.string(), 1, *ts.model, ts.opt, state1, 2);
  const auto model_bytes = fs::file_size(fs::path(step_dir(1)) / "model.safetensors");
  const auto opt_bytes = fs::file_size(fs::path(step_dir(1)) / "optimizer.safetensors");
  ASSERT_LT(model_bytes + 4096, opt_bytes);

  TrainState other(7);
  const json big_state = {{"blob", std::string(opt_bytes + 4096, 'x')}};
  // Fail writing the weights, then the moments, then state.json (the limit is per file).
  for (const auto& [limit, state] :
       {std::pair{rlim_t{512}, json{{"step", 2}}}, std::pair{rlim_t(model_bytes + 1024), json{{"step", 2}}},
        std::pair{rlim_t(opt_bytes + 1024), big_state}}) {
    SCOPED_TRACE(limit);
    {
      FileSizeLimit full(limit);
      expect_error([&] { checkpoint_save(run.string(), 2, *other.model, other.opt, state, 2); },
                   {"checkpoint step 2", "write failed", "(disk full?)"});
    }
    EXPECT_EQ(entries(), std::set<std::string>{"step-00000001"});  // no temporary left behind
    EXPECT_EQ(checkpoint_latest(run.string()), step_dir(1));
    expect_loads(step_dir(1), ts, state1);
  }
}

TEST_F(Checkpoint, ConfigMismatchIsRefused) {
  TrainState ts(8);
  checkpoint_save(run.string(), 1, *ts.model, ts.opt, {}, 1);
  ModelConfig c = tiny_config();
  c.rope_theta = 5000.0;
  Model model(c);
  AdamW opt(model.params, AdamWOptions{});
  expect_error([&] { checkpoint_load(step_dir(1), model, opt); },
               {"step-00000001", "config.json differs", "rope_theta", "10000", "5000"});
}
