// POST /db/load on a real loopback server with a fake backend
// (docs/http-api.md "Loading a database"): the upload reaches the backend as a
// spool file with the format its header says, under its own cap and not the
// body cap; every refusal (token, size, method, role) answers before any of
// the body is stored; the spool file is gone once the request ends, and one a
// killed process left behind is removed at start.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "net/http_api.h"
#include "net/http_client.h"

using namespace swarmlite;
using namespace swarmlite::net;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

struct Scratch {
  fs::path path;
  Scratch() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("swl-load-http-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  size_t files() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& de : fs::directory_iterator(path)) ++n;
    return n;
  }
};

// Records what load() was given (the spool file's bytes, read while it exists).
class LoadBackend : public HttpBackend {
 public:
  explicit LoadBackend(bool primary) : primary_(primary) {}
  bool accepts_writes() const override { return primary_; }
  Result<std::vector<QueryOutcome>> query(const std::vector<Statement>&, const QueryOptions&) override {
    return std::vector<QueryOutcome>{};
  }
  uint64_t size() const override { return 5; }
  nlohmann::json status() const override { return nlohmann::json::object(); }
  Status ready() const override { return ok_status(); }
  Result<nlohmann::json> load(const LoadRequest& request) override {
    std::lock_guard lock(mu_);
    ++calls_;
    format_ = request.format;
    spool_ = request.file;
    std::ifstream in(request.file, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    body_ = bytes.str();
    if (body_.size() != request.bytes) return make_error(Errc::internal, "size mismatch");
    return nlohmann::json{{"format", request.format == LoadFormat::sqlite ? "sqlite" : "sql"}, {"entries", 2}};
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::string body() {
    std::lock_guard lock(mu_);
    return body_;
  }
  LoadFormat format() {
    std::lock_guard lock(mu_);
    return format_;
  }
  fs::path spool() {
    std::lock_guard lock(mu_);
    return spool_;
  }

 private:
  bool primary_;
  std::mutex mu_;
  int calls_ = 0;
  std::string body_;
  LoadFormat format_ = LoadFormat::sql;
  fs::path spool_;
};

Result<HttpResponse> post(uint16_t port, const std::string& body, const std::string& content_type,
                          const std::string& token, const std::string& method = "POST") {
  HttpUrl url;
  url.host = "127.0.0.1";
  url.port = port;
  HttpRequest rq;
  rq.method = method;
  rq.target = "/db/load";
  rq.body = body;
  rq.content_type = content_type;
  if (!token.empty()) rq.authorization = "Bearer " + token;
  HttpClientOptions o;
  o.timeout = 30s;
  return http_call(url, rq, o);
}

// Sends `request` as is on a new connection, then `body` (which may be cut off by
// the server's answer); returns everything the server sent until it closed.
std::string raw(uint16_t port, const std::string& request, const std::string& body = {}) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  std::string out = request + body;
  for (size_t off = 0; off < out.size();) {
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server answered and stopped reading
    off += static_cast<size_t>(n);
  }
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return got;
}

struct Server {
  LoadBackend backend;
  Scratch spool;
  std::unique_ptr<HttpApi> api;
  uint16_t port = 0;
  explicit Server(bool primary, std::optional<std::string> primary_url = std::nullopt) : backend(primary) {
    HttpApiOptions o;
    o.listen = "127.0.0.1:0";
    o.write_token = "s3cret";
    o.max_body_bytes = 1024;          // the other endpoints' cap …
    o.max_load_bytes = 256u << 10;    // … is not the load's
    o.load_dir = spool.path;
    o.primary_url = std::move(primary_url);
    api = std::make_unique<HttpApi>(backend, o);
    REQUIRE(api->start().ok());
    port = api->bound_port();
  }
};

}  // namespace

TEST_CASE("POST /db/load: a dump and a SQLite file reach the backend as spool files, over the body cap") {
  Server s(true);
  std::string dump;
  for (int i = 0; i < 2000; ++i) dump += "INSERT INTO t VALUES(" + std::to_string(i) + ");\n";
  REQUIRE(dump.size() > 1024);
  auto r = post(s.port, dump, "text/plain", "s3cret");
  REQUIRE_MESSAGE(r.ok(), r.error_text());
  INFO(r->body);
  CHECK(r->status == 200);
  CHECK(r->body.find("\"results\":[{}]") != std::string::npos);
  CHECK(r->body.find("\"load\":{") != std::string::npos);
  CHECK(r->swarmlite_size == "5");
  CHECK(s.backend.body() == dump);
  CHECK(s.backend.format() == LoadFormat::sql);
  CHECK(s.backend.spool().parent_path() == s.spool.path);
  CHECK_FALSE(fs::exists(s.backend.spool()));  // removed once answered

  // The header decides, whatever the Content-Type says.
  std::string file("SQLite format 3\0", 16);
  file += std::string(4080, '\x01');
  r = post(s.port, file, "text/plain", "s3cret");
  REQUIRE(r.ok());
  CHECK(r->status == 200);
  CHECK(s.backend.format() == LoadFormat::sqlite);
  CHECK(s.backend.body() == file);
  // octet-stream that is no database: 400, the backend never sees it.
  r = post(s.port, dump, "application/octet-stream", "s3cret");
  REQUIRE(r.ok());
  CHECK(r->status == 400);
  CHECK(r->body.find("not a SQLite database") != std::string::npos);
  CHECK(s.backend.calls() == 2);
  CHECK(s.spool.files() == 0);

  // The body cap still holds for the other endpoints.
  HttpUrl url;
  url.host = "127.0.0.1";
  url.port = s.port;
  HttpRequest rq;
  rq.method = "POST";
  rq.target = "/db/execute";
  rq.body = "[\"" + std::string(2000, 'x') + "\"]";
  rq.authorization = "Bearer s3cret";
  auto big = http_call(url, rq, {});
  REQUIRE(big.ok());
  CHECK(big->status == 413);
}

TEST_CASE("POST /db/load refusals answer from the header: nothing is stored, the backend is not called") {
  Server s(true);
  const std::string dump(100000, ' ');
  auto r = post(s.port, dump, "text/plain", "");
  REQUIRE(r.ok());
  CHECK(r->status == 401);
  r = post(s.port, dump, "text/plain", "wrong");
  REQUIRE(r.ok());
  CHECK(r->status == 401);
  r = post(s.port, "", "text/plain", "s3cret");
  REQUIRE(r.ok());
  CHECK(r->status == 400);
  CHECK(r->body.find("empty") != std::string::npos);
  r = post(s.port, "", "text/plain", "s3cret", "GET");
  REQUIRE(r.ok());
  CHECK(r->status == 405);
  // Declared over the cap: 413 before reading.
  r = post(s.port, std::string((256u << 10) + 1, 'x'), "text/plain", "s3cret");
  REQUIRE(r.ok());
  CHECK(r->status == 413);
  CHECK(r->body.find("load cap") != std::string::npos);
  // Chunked, so the size shows only while reading: 413 once past the cap.
  std::string chunk(64u << 10, 'y');
  std::string chunks;
  for (int i = 0; i < 6; ++i) chunks += fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk);
  chunks += "0\r\n\r\n";
  std::string answer = raw(s.port,
                           "POST /db/load HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
                           "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                           chunks);
  CHECK(answer.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(s.backend.calls() == 0);
  CHECK(s.spool.files() == 0);
}

TEST_CASE("POST /db/load on a peer: 307 to the primary's URL with the same target; 403 without one") {
  Server with(false, std::string("http://127.0.0.1:9"));
  std::string answer = raw(with.port,
                           "POST /db/load?pretty HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                           "Content-Length: 5\r\n\r\n",
                           "hello");
  INFO(answer);
  CHECK(answer.rfind("HTTP/1.1 307", 0) == 0);
  CHECK(answer.find("Location: http://127.0.0.1:9/db/load?pretty\r\n") != std::string::npos);
  Server without(false);
  auto r = post(without.port, "hello", "text/plain", "s3cret");
  REQUIRE(r.ok());
  CHECK(r->status == 403);
  CHECK(with.backend.calls() + without.backend.calls() == 0);
}

TEST_CASE("an upload a killed process left in the load directory is removed at start") {
  Scratch dir;
  std::ofstream(dir.path / ".swarmlite-load-999999-0.upload") << "half an upload";
  std::ofstream(dir.path / "keep.me") << "not ours";
  LoadBackend backend(true);
  HttpApiOptions o;
  o.listen = "127.0.0.1:0";
  o.load_dir = dir.path;
  HttpApi api(backend, o);
  REQUIRE(api.start().ok());
  CHECK_FALSE(fs::exists(dir.path / ".swarmlite-load-999999-0.upload"));
  CHECK(fs::exists(dir.path / "keep.me"));
  api.stop();
}
