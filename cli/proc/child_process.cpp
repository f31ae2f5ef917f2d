#include "cli/proc/child_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace swarmlite::proc {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

ChildProcess::ChildProcess(std::string name, const std::filesystem::path& exe, const std::vector<std::string>& args,
                           const std::filesystem::path& log, std::function<void()> poll)
    : name_(std::move(name)), log_(log), poll_(std::move(poll)) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0)
    throw std::runtime_error(fmt::format("{}: pipe: {}", name_, std::strerror(errno)));
  int logfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    throw std::runtime_error(fmt::format("{}: cannot open {}: {}", name_, log.string(), std::strerror(errno)));
  }
  std::vector<std::string> argv_s{exe.filename().string()};
  if (exe == "/proc/self/exe") argv_s[0] = "swarmlite";
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string exe_s = exe.string();
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) {
    int e = errno;
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    ::close(logfd);
    throw std::runtime_error(fmt::format("{}: fork: {}", name_, std::strerror(e)));
  }
  if (pid_ == 0) {
    // Child: only async-signal-safe calls until exec.
    setpgid(0, 0);                     // Ctrl-C reaches the parent, which stops children in order
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // and if the parent dies hard, they stop too
    if (getppid() != parent) _exit(127);
    signal(SIGPIPE, SIG_DFL);  // an ignored signal would survive exec
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(pipefd[1], 1);
    dup2(logfd, 2);
    execv(exe_s.c_str(), argv.data());
    _exit(127);
  }
  ::close(pipefd[1]);
  ::close(logfd);
  reader_ = std::thread([this, fd = pipefd[0]] { read_stdout(fd); });
}

std::string ChildProcess::listen() const {
  std::lock_guard lock(mu_);
  return listen_;
}

std::string ChildProcess::http() const {
  std::lock_guard lock(mu_);
  return http_;
}

void ChildProcess::wait_ready(std::chrono::milliseconds timeout, bool need_http) {
  auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  while (listen_.empty() || (need_http && http_.empty())) {
    if (poll_) poll_();
    if (eof_ || Clock::now() > deadline) {
      lock.unlock();
      bool exited = reap(false);
      throw std::runtime_error(fmt::format("{} {} before saying where it listens; its log {} ends:\n{}", name_,
                                           exited ? fmt::format("exited ({})", describe_status())
                                                  : "did not start in time",
                                           log_.string(), log_tail()));
    }
    cv_.wait_for(lock, 100ms);
  }
}

std::optional<std::string> ChildProcess::wait_line(const std::string& prefix, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mu_);
  for (;;) {
    for (const auto& l : lines_)
      if (l.rfind(prefix, 0) == 0) return l;
    if (eof_ || Clock::now() > deadline) return std::nullopt;
    if (poll_) poll_();
    cv_.wait_for(lock, 100ms);
  }
}

bool ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!reap(false)) {
    if (Clock::now() > deadline) return false;
    if (poll_) poll_();
    std::this_thread::sleep_for(10ms);
  }
  if (reader_.joinable()) reader_.join();
  return true;
}

bool ChildProcess::stop() {
  bool killed = false;
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGTERM);
    auto deadline = Clock::now() + kGrace;
    while (!reap(false) && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      reap(true);
      killed = true;
    }
  }
  if (reader_.joinable()) reader_.join();
  return killed;
}

void ChildProcess::kill_hard() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
  if (reader_.joinable()) reader_.join();
}

bool ChildProcess::running() { return pid_ > 0 && !reap(false); }

std::optional<int> ChildProcess::exit_code() {
  if (!reap(false) || !WIFEXITED(wstatus_)) return std::nullopt;
  return WEXITSTATUS(wstatus_);
}

std::string ChildProcess::describe_status() {
  if (!reap(false)) return "running";
  if (WIFEXITED(wstatus_)) return fmt::format("exit code {}", WEXITSTATUS(wstatus_));
  if (WIFSIGNALED(wstatus_)) return fmt::format("signal {}", WTERMSIG(wstatus_));
  return "unknown status";
}

std::string ChildProcess::log_tail(size_t max_lines) const {
  std::ifstream in(log_);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) {
    lines.push_back(std::move(l));
    if (lines.size() > max_lines) lines.erase(lines.begin());
  }
  std::string out;
  for (auto& l : lines) out += "  | " + l + "\n";
  return out.empty() ? "  | (empty)\n" : out;
}

bool ChildProcess::reap(bool block) {
  if (reaped_) return true;
  if (pid_ <= 0) return true;
  pid_t r = waitpid(pid_, &wstatus_, block ? 0 : WNOHANG);
  if (r == pid_) reaped_ = true;
  return reaped_;
}

void ChildProcess::read_stdout(int fd) {
  std::ofstream log(log_, std::ios::app);
  std::string buf;
  char chunk[4096];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos; buf.erase(0, nl + 1)) {
      std::string line = buf.substr(0, nl);
      log << line << '\n' << std::flush;
      std::lock_guard lock(mu_);
      if (line.rfind("listen: ", 0) == 0 && listen_.empty()) listen_ = line.substr(8);
      if (line.rfind("http: ", 0) == 0 && http_.empty()) http_ = line.substr(6);
      if (lines_.size() < 10000) lines_.push_back(line);
      cv_.notify_all();
    }
  }
  if (!buf.empty()) log << buf << '\n';
  ::close(fd);
  std::lock_guard lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

void run_to_end(const std::string& name, const std::filesystem::path& exe, const std::vector<std::string>& args,
                const std::filesystem::path& log, std::chrono::milliseconds timeout) {
  ChildProcess child(name, exe, args, log);
  if (!child.wait_exit(timeout) || child.exit_code() != 0)
    throw std::runtime_error(fmt::format("{} failed ({}); its log {} ends:\n{}", name, child.describe_status(),
                                         log.string(), child.log_tail()));
}

}  // namespace swarmlite::proc
