// swarmlite backup --from URL --pub KEY --out FILE [--fmt sql]: downloads
// GET /db/backup from a primary or any peer (streamed to FILE), checks the
// signed head it came with against the public key and, for the database file,
// recomputes the state root over the downloaded pages and compares it with the
// head's (docs/http-api.md "Backups"). On any failure the output is deleted.
#ifdef SWARMLITE_HAVE_NET
#include <fcntl.h>

#include <chrono>
#include <limits>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "core/file_io.h"
#include "core/head.h"
#include "core/keys.h"
#include "net/http_client.h"
#include "net/http_json.h"
#include "sqlbridge/tools/backup.h"

namespace swarmlite::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct Downloaded {
  Head head;
  uint64_t bytes = 0;
};

// Streams the body of GET url/db/backup[?fmt=sql] into `out` (created, 0600).
// `idle` bounds every connect, read and write, not the whole transfer.
Result<Downloaded> download(const net::HttpUrl& url, bool sql, const std::filesystem::path& out,
                            std::chrono::milliseconds idle) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  boost::system::error_code ec;
  asio::ip::tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) return make_error(Errc::unavailable, "resolving {}: {}", url.host, ec.message());
  stream.expires_after(idle);
  stream.connect(endpoints, ec);
  if (ec) return make_error(Errc::unavailable, "connecting to {}:{}: {}", url.host, url.port, ec.message());
  http::request<http::empty_body> req{http::verb::get, url.base_path + (sql ? "/db/backup?fmt=sql" : "/db/backup"), 11};
  req.set(http::field::host, url.host);
  req.set(http::field::user_agent, "swarmlite-backup");
  if (!url.user.empty() || !url.password.empty())
    req.set(http::field::authorization,
            "Basic " + net::base64_encode(ByteView(reinterpret_cast<const uint8_t*>((url.user + ":" + url.password).data()),
                                                   url.user.size() + 1 + url.password.size())));
  http::write(stream, req, ec);
  if (ec) return make_error(Errc::unavailable, "sending the request: {}", ec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // a database may be any size: it goes to disk, not memory
  stream.expires_after(idle);
  http::read_header(stream, buffer, parser, ec);
  if (ec) return make_error(Errc::unavailable, "reading the answer's header: {}", ec.message());
  const auto& h = parser.get();
  if (h.result_int() != 200) {
    // An error answer is small JSON: read it for the message.
    http::response_parser<http::string_body> err(std::move(parser));
    err.body_limit(1u << 20);
    http::read(stream, buffer, err, ec);
    return make_error(Errc::unavailable, "the node answered HTTP {}: {}", err.get().result_int(), err.get().body());
  }
  auto head_field = h["X-Swarmlite-Head"];
  if (head_field.empty()) return make_error(Errc::bad_value, "the answer has no X-Swarmlite-Head header");
  SWL_ASSIGN(Bytes head_bytes, net::base64_decode(std::string_view(head_field.data(), head_field.size())));
  auto head = decode_head(head_bytes);
  if (!head.ok()) return make_error(Errc::bad_value, "X-Swarmlite-Head: {}", head.error().to_string());

  SWL_ASSIGN(file_io::Fd fd, file_io::open(out, O_WRONLY | O_CREAT | O_EXCL, 0600));
  Downloaded d{*head, 0};
  std::vector<uint8_t> chunk(1u << 20);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    stream.expires_after(idle);
    http::read(stream, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return make_error(Errc::unavailable, "reading the file after {} bytes: {}", d.bytes, ec.message());
    size_t got = chunk.size() - parser.get().body().size;
    SWL_TRY(file_io::write_all(fd.get(), ByteView(chunk.data(), got), out));
    d.bytes += got;
  }
  SWL_TRY(file_io::fsync_file(fd.get(), out));
  SWL_TRY(fd.close(out));
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  return d;
}

}  // namespace

void add_backup_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "backup", "Download a node's database (GET /db/backup) and check it against the signed head it comes with");
  struct Args {
    std::string from, pub, out, fmt = "sqlite";
    double timeout_s = 60;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--from", a->from, "The node's HTTP API (primary or any peer), http://HOST:PORT")->required();
  cmd->add_option("--pub", a->pub, "The log's public key (64 hex digits or a .pub file)")->required();
  cmd->add_option("--out", a->out, "Where to write the file (must not exist)")->required();
  cmd->add_option("--fmt", a->fmt, "sqlite (the database file, checked) or sql (a SQL dump, head signature only)")
      ->check(CLI::IsMember({"sqlite", "sql"}));
  cmd->add_option("--timeout", a->timeout_s, "Seconds without progress before giving up")->check(CLI::PositiveNumber);
  cmd->callback([a] {
    const bool sql = a->fmt == "sql";
    auto pub = must(load_public_key(a->pub), "--pub");
    auto url = must(net::parse_http_url(a->from), "--from");
    const std::filesystem::path out(a->out);
    if (std::filesystem::exists(out)) throw CliError(1, fmt::format("--out {}: already exists", out.string()));
    auto fail = [&out](const std::string& what) {
      std::error_code ignored;
      std::filesystem::remove(out, ignored);
      throw CliError(2, what + " — " + out.string() + " was deleted");
    };
    auto got = download(url, sql, out, std::chrono::milliseconds(static_cast<int64_t>(a->timeout_s * 1000)));
    if (!got.ok()) fail(fmt::format("backup from {}: {}", a->from, got.error().to_string()));
    if (auto s = got->head.verify(pub); !s.ok())
      fail(fmt::format("backup from {}: the head is not signed by {}: {}", a->from, a->pub, s.error().to_string()));
    if (sql) {
      std::printf("wrote %s: %llu bytes, a SQL dump of the state at signed size %llu, state root %s\n"
                  "(a dump cannot be checked against the head; download the database file to check it)\n",
                  out.string().c_str(), static_cast<unsigned long long>(got->bytes),
                  static_cast<unsigned long long>(got->head.size), to_hex(got->head.state_root).c_str());
      return;
    }
    auto check = verify_backup_file(out, got->head, pub);
    if (!check.ok()) fail(fmt::format("backup from {} refused: {}", a->from, check.error().to_string()));
    std::printf("verified %s: %llu bytes, %u pages, size %llu, state root %s\n", out.string().c_str(),
                static_cast<unsigned long long>(check->bytes), check->page_count,
                static_cast<unsigned long long>(got->head.size), to_hex(check->state_root).c_str());
  });
}

}  // namespace swarmlite::cli
#endif
