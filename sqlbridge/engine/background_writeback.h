// Starts the kernel's writeback of a file's dirty pages from a thread of its
// own, so that a later fdatasync of the file (SQLite's at a checkpoint) finds
// little left to write (docs/performance.md "WAL writeback off the write
// path"). A hint only: it never makes anything durable and nothing waits for it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <thread>

namespace swarmlite {

class BackgroundWriteback {
 public:
  explicit BackgroundWriteback(std::filesystem::path file);
  ~BackgroundWriteback();  // stops and joins the thread
  BackgroundWriteback(const BackgroundWriteback&) = delete;
  BackgroundWriteback& operator=(const BackgroundWriteback&) = delete;

  // Asks the thread to start the file's writeback; returns at once. Kicks
  // while one runs are coalesced into one more run.
  void kick();
  // kick() once `written` (pages or frames the caller wrote to the file so
  // far, a count that only grows until the file starts over) is kPagesPerKick
  // past where it was at the last kick; a lower count than that (the file
  // started over, the counter was reset) becomes the new mark. From one
  // thread at a time (the file's writer): the mark is not locked.
  void kick_if_grown(int64_t written);
  // The primary's -wal frames and a replica's -wal pages between two kicks.
  static constexpr int64_t kPagesPerKick = 200;
  // Writebacks started so far (a missing file or a failing call counts not).
  uint64_t runs() const;

 private:
  void loop();

  const std::filesystem::path file_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool kicked_ = false, stop_ = false;  // under mu_
  uint64_t runs_ = 0;                   // under mu_
  int64_t kicked_at_ = 0;               // kick_if_grown's mark; its caller's thread
  std::thread thread_;
};

}  // namespace swarmlite
