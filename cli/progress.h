// Progress for long work a person waits for (import, audit, catch-up).
// On a terminal: one line redrawn in place ("\r") with a bar, rate and ETA.
// Otherwise (pipes, CI logs): a plain line at most every few seconds and at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace swarmlite::cli {

class Progress {
 public:
  // `what` names the work ("import", "audit"); `unit` the counted things ("rows").
  Progress(std::string what, std::string unit);
  ~Progress();  // finishes the line if update() was called and finish() was not
  // done of total (total 0 = unknown).
  void update(uint64_t done, uint64_t total);
  void finish();

 private:
  void draw(bool final_line);

  std::string what_, unit_;
  bool tty_;
  bool started_ = false, finished_ = false;
  uint64_t done_ = 0, total_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace swarmlite::cli
