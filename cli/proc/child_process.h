// A child process for the demo and the integration tests: runs an executable
// with its stdout read line by line by a thread that copies every line into a
// log file (where its stderr also goes) and remembers the "listen: ADDR" and
// "http: URL" lines the swarmlite servers print when they are ready.
//
// The destructor stops the child: SIGTERM, up to kGrace to exit, then SIGKILL.
// The child gets its own process group and PR_SET_PDEATHSIG(SIGTERM), so a
// parent that dies hard does not leave servers behind.
// Errors are thrown as std::runtime_error with the log's tail in the message.
// Not copyable or movable (the reader thread holds `this`).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace swarmlite::proc {

class ChildProcess {
 public:
  static constexpr std::chrono::seconds kGrace{5};

  // Starts `exe` with argv = {argv0, args…}; "/proc/self/exe" runs this binary.
  // `poll`, if set, is called while waiting (it may throw, e.g. on Ctrl-C).
  ChildProcess(std::string name, const std::filesystem::path& exe, const std::vector<std::string>& args,
               const std::filesystem::path& log, std::function<void()> poll = {});
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  // "HOST:PORT" from the "listen: " line and "http://HOST:PORT" from the
  // "http: " line; empty until printed (stable once wait_ready returned).
  std::string listen() const;
  std::string http() const;

  // Blocks until the address lines were printed (the http line only if
  // `need_http`); throws if the child exits first or `timeout` passes.
  void wait_ready(std::chrono::milliseconds timeout, bool need_http = true);
  // Blocks until some stdout line (printed at any time so far) starts with
  // `prefix`; returns the first such line, or nullopt on exit/timeout.
  std::optional<std::string> wait_line(const std::string& prefix, std::chrono::milliseconds timeout);

  // Waits up to `timeout` for the child to exit by itself; true if it did.
  bool wait_exit(std::chrono::milliseconds timeout);
  // Idempotent. SIGTERM, kGrace, then SIGKILL. Returns true if it had to be killed.
  bool stop();
  // SIGKILL now and reap (a crash, for crash tests). Idempotent.
  void kill_hard();
  bool running();
  // Exit code if it exited normally; nullopt while running or when signalled.
  std::optional<int> exit_code();
  std::string describe_status();
  std::string log_tail(size_t max_lines = 12) const;
  const std::filesystem::path& log_path() const { return log_; }

 private:
  bool reap(bool block);
  void read_stdout(int fd);

  std::string name_;
  std::filesystem::path log_;
  std::function<void()> poll_;
  pid_t pid_ = -1;
  int wstatus_ = 0;
  bool reaped_ = false;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;  // guarded by mu_: every stdout line so far
  std::string listen_, http_;       // guarded by mu_
  bool eof_ = false;                // guarded by mu_
};

// Runs `exe args…` to completion (up to `timeout`) with output into `log`;
// throws unless it exits with code 0.
void run_to_end(const std::string& name, const std::filesystem::path& exe, const std::vector<std::string>& args,
                const std::filesystem::path& log, std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace swarmlite::proc
