#include "cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace swarmlite::cli {

using Clock = std::chrono::steady_clock;

Progress::Progress(std::string what, std::string unit)
    : what_(std::move(what)), unit_(std::move(unit)), tty_(::isatty(STDERR_FILENO) == 1) {}

Progress::~Progress() {
  if (started_ && !finished_) finish();
}

void Progress::update(uint64_t done, uint64_t total) {
  auto now = Clock::now();
  if (!started_) {
    started_ = true;
    start_ = now;
    last_draw_ = now - std::chrono::hours(1);
  }
  done_ = done;
  total_ = total;
  auto since = now - last_draw_;
  if ((tty_ && since >= std::chrono::milliseconds(100)) || (!tty_ && since >= std::chrono::seconds(5))) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!started_) return;
  draw(true);
}

void Progress::draw(bool final_line) {
  double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
  std::string line;
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    std::string eta;
    if (!final_line && rate > 0 && done_ < total_) {
      eta = fmt::format(", {:.0f}s left", static_cast<double>(total_ - done_) / rate);
    }
    if (tty_) {
      constexpr int kWidth = 30;
      int filled = static_cast<int>(frac * kWidth);
      line = fmt::format("{} [{}{}] {:5.1f}% {}/{} {} ({:.0f}/s{})", what_, std::string(filled, '#'),
                         std::string(kWidth - filled, '.'), frac * 100, done_, total_, unit_, rate, eta);
    } else {
      line = fmt::format("{}: {}/{} {} ({:.1f}%, {:.0f}/s{})", what_, done_, total_, unit_, frac * 100,
                         rate, eta);
    }
  } else {
    line = fmt::format("{}: {} {} ({:.0f}/s)", what_, done_, unit_, rate);
  }
  if (final_line) line += fmt::format(" in {:.1f}s", secs);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace swarmlite::cli
