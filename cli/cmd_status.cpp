// swarmlite status --node URL: a node's /status (and /readyz) as JSON.
#ifdef SWARMLITE_HAVE_NET
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "net/http_client.h"
#include "net/http_json.h"

namespace swarmlite::cli {

void add_status_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("status", "Print a node's status (GET /status) and readiness (GET /readyz)");
  auto node = std::make_shared<std::string>();
  auto timeout_s = std::make_shared<double>(10);
  cmd->add_option("--node", *node, "The node's HTTP API, http://HOST:PORT")->required();
  cmd->add_option("--timeout", *timeout_s, "Seconds to wait for the answer")->check(CLI::PositiveNumber);
  cmd->callback([node, timeout_s] {
    auto url = must(net::parse_http_url(*node), "--node");
    net::HttpClientOptions co;
    co.timeout = std::chrono::milliseconds(static_cast<int64_t>(*timeout_s * 1000));
    net::HttpRequest req;
    req.target = "/status";
    auto res = must(net::http_call(url, req, co), "status " + *node);
    if (res.status != 200) throw CliError(1, fmt::format("{} answered HTTP {}: {}", *node, res.status, res.body));
    auto doc = nlohmann::json::parse(res.body, nullptr, false);
    if (doc.is_discarded()) throw CliError(1, fmt::format("{} sent a /status that is not JSON", *node));
    req.target = "/readyz";
    auto ready = net::http_call(url, req, co);
    if (ready.ok()) {
      std::string body = ready->body;
      while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
      doc["ready"] = {{"ok", ready->status == 200}, {"detail", body}};
    }
    std::fputs(net::dump_json(doc, true).c_str(), stdout);
    if (ready.ok() && ready->status != 200) throw CliError(3, "node is not ready: " + doc["ready"]["detail"].get<std::string>());
  });
}

}  // namespace swarmlite::cli
#endif
