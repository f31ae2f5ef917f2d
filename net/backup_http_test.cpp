// GET /db/backup on a real loopback server with a fake backend: the file is
// streamed as made, backups over max_backups get 503 busy at once, bad
// requests get 400/405 (docs/http-api.md "Backups").
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include "net/http_api.h"
#include "net/http_client.h"

using namespace swarmlite;
using namespace swarmlite::net;
using namespace std::chrono_literals;

namespace {

// backup() blocks until release(); then answers a file of `bytes_` bytes.
class BlockingBackend : public HttpBackend {
 public:
  bool accepts_writes() const override { return false; }
  Result<std::vector<QueryOutcome>> query(const std::vector<Statement>&, const QueryOptions&) override {
    return std::vector<QueryOutcome>{};
  }
  uint64_t size() const override { return 7; }
  nlohmann::json status() const override { return nlohmann::json::object(); }
  Status ready() const override { return ok_status(); }
  Result<BackupFile> backup(BackupFormat format, std::chrono::steady_clock::time_point,
                            const std::atomic<bool>*) override {
    {
      std::unique_lock lock(mu_);
      ++entered_;
      cv_.notify_all();
      cv_.wait_for(lock, 60s, [&] { return released_; });
      last_format_ = format;
    }
    std::random_device rd;
    auto path = std::filesystem::temp_directory_path() / ("swl-backup-test-" + std::to_string(rd()));
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return make_error(Errc::io_error, "temp file");
    std::string data(bytes_, 'x');
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 % 251);
    if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) return make_error(Errc::io_error, "write");
    ::lseek(fd, 0, SEEK_SET);
    std::filesystem::remove(path);
    BackupFile f;
    f.fd = file_io::Fd(fd);
    f.bytes = data.size();
    f.head.size = 7;
    return f;
  }
  void wait_entered(int n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 60s, [&] { return entered_ >= n; });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  std::optional<BackupFormat> last_format() {
    std::lock_guard lock(mu_);
    return last_format_;
  }
  size_t bytes_ = 3 * 1024 * 1024 + 5;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool released_ = false;
  std::optional<BackupFormat> last_format_;
};

Result<HttpResponse> get(uint16_t port, const std::string& target, const std::string& method = "GET") {
  HttpUrl url;
  url.host = "127.0.0.1";
  url.port = port;
  HttpRequest rq;
  rq.method = method;
  rq.target = target;
  HttpClientOptions o;
  o.timeout = 60s;
  return http_call(url, rq, o);
}

}  // namespace

TEST_CASE("GET /db/backup streams the backend's file; over max_backups is 503 busy; bad requests 400/405") {
  BlockingBackend backend;
  HttpApiOptions o;
  o.listen = "127.0.0.1:0";
  o.max_backups = 1;
  HttpApi api(backend, o);
  REQUIRE(api.start().ok());
  const uint16_t port = api.bound_port();

  Result<HttpResponse> first = make_error(Errc::internal, "not run");
  std::thread t([&] { first = get(port, "/db/backup?fmt=sql"); });
  backend.wait_entered(1);
  auto second = get(port, "/db/backup");
  REQUIRE(second.ok());
  CHECK(second->status == 503);
  CHECK(second->body.find("busy") != std::string::npos);
  backend.release();
  t.join();
  REQUIRE_MESSAGE(first.ok(), first.error_text());
  CHECK(first->status == 200);
  CHECK(first->content_type == "application/sql");
  REQUIRE(first->body.size() == backend.bytes_);
  bool same = true;
  for (size_t i = 0; i < first->body.size(); ++i) same = same && first->body[i] == static_cast<char>(i * 7 % 251);
  CHECK(same);
  CHECK(backend.last_format() == BackupFormat::sql);

  // The slot was given back: the next one runs.
  auto third = get(port, "/db/backup");
  REQUIRE(third.ok());
  CHECK(third->status == 200);
  CHECK(third->content_type == "application/octet-stream");
  CHECK(backend.last_format() == BackupFormat::sqlite);

  auto bad = get(port, "/db/backup?fmt=csv");
  REQUIRE(bad.ok());
  CHECK(bad->status == 400);
  CHECK(bad->body.find("fmt=csv") != std::string::npos);
  auto post = get(port, "/db/backup", "POST");
  REQUIRE(post.ok());
  CHECK(post->status == 405);
  api.stop();
}
