#include "sqlbridge/engine/background_writeback.h"

#include <fcntl.h>

#include "core/file_io.h"

namespace swarmlite {

BackgroundWriteback::BackgroundWriteback(std::filesystem::path file)
    : file_(std::move(file)), thread_([this] { loop(); }) {}

BackgroundWriteback::~BackgroundWriteback() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void BackgroundWriteback::kick() {
  {
    std::lock_guard lock(mu_);
    if (kicked_) return;
    kicked_ = true;
  }
  cv_.notify_one();
}

void BackgroundWriteback::kick_if_grown(int64_t written) {
  if (written < kicked_at_) kicked_at_ = written;
  if (written - kicked_at_ < kPagesPerKick) return;
  kick();
  kicked_at_ = written;
}

uint64_t BackgroundWriteback::runs() const {
  std::lock_guard lock(mu_);
  return runs_;
}

void BackgroundWriteback::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || kicked_; });
    if (stop_) return;
    kicked_ = false;
    lock.unlock();
    // Opened each time: the file may not exist yet, or may have been replaced.
    bool started = false;
    if (auto fd = file_io::open(file_, O_RDONLY); fd.ok()) {
      started = ::sync_file_range(fd->get(), 0, 0, SYNC_FILE_RANGE_WRITE) == 0;
    }
    lock.lock();
    if (started) ++runs_;
  }
}

}  // namespace swarmlite
