// The node's pure bookkeeping with a fake clock: address book, bans, and the
// sync decisions (which peer to ask, which batch).
#include "net/peer_set.h"

#include <doctest/doctest.h>

using namespace swarmlite::net;
using namespace std::chrono_literals;

TEST_CASE("address book deduplicates, refuses junk and its own address") {
  AddressBook book(10, "127.0.0.1:7000");
  CHECK(book.add("127.0.0.1:7001"));
  CHECK_FALSE(book.add("127.0.0.1:7001"));
  CHECK_FALSE(book.add("127.0.0.1:7000"));  // self
  CHECK_FALSE(book.add("not an address"));
  CHECK(book.size() == 1);
}

TEST_CASE("address book is bounded and never evicts seeds") {
  AddressBook book(3, "");
  book.add("s:1", /*seed=*/true);
  book.add("a:1");
  book.add("b:1");
  book.add("c:1");  // evicts the oldest non-seed
  CHECK(book.size() == 3);
  CHECK(book.contains("s:1"));
  CHECK_FALSE(book.contains("a:1"));
  CHECK(book.contains("c:1"));
  AddressBook seeds_only(1, "");
  seeds_only.add("s:1", true);
  CHECK_FALSE(seeds_only.add("x:1"));
  CHECK(seeds_only.contains("s:1"));
}

TEST_CASE("seeds_only picks only seeds that are not excluded (redial while slots are full)") {
  AddressBook book(10, "");
  book.add("learnt:1");
  book.add("seed:1", true);
  book.add("seed:2", true);
  auto t0 = Clock::time_point{} + 1h;
  CHECK(book.pick_to_dial(5, {"seed:2"}, t0, /*seeds_only=*/true) == std::vector<std::string>{"seed:1"});
  CHECK(book.pick_to_dial(5, {}, t0, /*seeds_only=*/true) == std::vector<std::string>{"seed:2"});
  CHECK(book.pick_to_dial(5, {}, t0) == std::vector<std::string>{"learnt:1"});
}

TEST_CASE("failed dials back off exponentially and a success resets it") {
  BackoffPolicy policy{100ms, 1000ms};
  AddressBook book(10, "", policy);
  book.add("a:1", true);
  auto t0 = Clock::time_point{} + 1h;
  CHECK(book.pick_to_dial(5, {}, t0) == std::vector<std::string>{"a:1"});
  CHECK(book.pick_to_dial(5, {}, t0).empty());  // dial in progress
  book.on_dial_failed("a:1", t0);
  CHECK(book.pick_to_dial(5, {}, t0 + 99ms).empty());
  CHECK(book.pick_to_dial(5, {}, t0 + 100ms).size() == 1);
  book.on_dial_failed("a:1", t0 + 100ms);  // 2nd failure: 200 ms
  CHECK(book.pick_to_dial(5, {}, t0 + 299ms).empty());
  CHECK(book.pick_to_dial(5, {}, t0 + 300ms).size() == 1);
  for (int i = 0; i < 10; ++i) book.on_dial_failed("a:1", t0);
  CHECK(book.pick_to_dial(5, {}, t0 + 1000ms).size() == 1);  // capped at max
  book.on_connected("a:1");
  book.on_dial_failed("a:1", t0);
  CHECK(book.pick_to_dial(5, {}, t0 + 100ms).size() == 1);
}

TEST_CASE("addresses that keep failing are forgotten unless they are seeds") {
  AddressBook book(10, "");
  book.add("seed:1", true);
  book.add("x:1");
  auto t = Clock::time_point{};
  for (int i = 0; i < AddressBook::kForgetAfterFailures; ++i) {
    book.on_dial_failed("seed:1", t);
    book.on_dial_failed("x:1", t);
  }
  CHECK(book.contains("seed:1"));
  CHECK_FALSE(book.contains("x:1"));
}

TEST_CASE("pick_to_dial skips excluded addresses and prefers seeds") {
  AddressBook book(10, "");
  book.add("a:1");
  book.add("b:1");
  book.add("z:1", true);
  auto t = Clock::time_point{} + 1h;
  auto picked = book.pick_to_dial(2, {"a:1"}, t);
  CHECK(picked == std::vector<std::string>{"z:1", "b:1"});
  CHECK(book.sample(10, {"b:1"}) == std::vector<std::string>{"a:1", "z:1"});
}

TEST_CASE("bans expire and can be extended") {
  BanList bans;
  auto t = Clock::time_point{} + 1h;
  bans.ban("h:1", "bad head", t, 10s);
  CHECK(bans.find("h:1", t + 9s)->reason == "bad head");
  CHECK_FALSE(bans.find("h:1", t + 10s));
  bans.ban("h:1", "bad frame", t, 10s);
  bans.ban("h:1", "bad proof", t + 5s, 10s);
  CHECK(bans.find("h:1", t + 14s)->reason == "bad proof");
  CHECK(bans.active(t + 14s).size() == 1);
  CHECK(bans.active(t + 15s).empty());
}

TEST_CASE("ban list is bounded: the ban ending first goes") {
  BanList bans(2);
  auto t = Clock::time_point{} + 1h;
  bans.ban("a", "r", t, 10s);
  bans.ban("b", "r", t, 20s);
  bans.ban("c", "r", t, 30s);
  CHECK_FALSE(bans.find("a", t));
  CHECK(bans.find("b", t));
  CHECK(bans.find("c", t));
}

TEST_CASE("choose_source asks the longest head, round robin among equals, never a busy peer") {
  std::vector<SourceInfo> s = {{1, 10, 5, false}, {2, 20, 7, false}, {3, 20, 3, false},
                               {4, 30, 0, true}, {5, 8, 0, false}};
  CHECK(choose_source(s, 9) == 3u);   // 4 is busy; 2 and 3 tie on 20: 3 used less recently
  CHECK(choose_source(s, 20) == std::nullopt);  // only the busy one is ahead
  CHECK(choose_source(s, 25) == std::nullopt);
  s[3].busy = false;
  CHECK(choose_source(s, 25) == 4u);
  CHECK(choose_source({}, 0) == std::nullopt);
}

TEST_CASE("choose_source skips a peer that compacted the entries we need; unserved_entries says which") {
  // {id, head_size, last_used, busy, first}
  std::vector<SourceInfo> s = {{1, 100, 0, false, 50}, {2, 100, 0, false, 80}, {3, 20, 0, false, 0}};
  CHECK(choose_source(s, 30) == std::nullopt);  // 1 and 2 start at 50 and 80; 3 is behind us
  CHECK(unserved_entries(s, 30) == EntryRange{30, 50});
  CHECK(choose_source(s, 50) == 1u);
  CHECK_FALSE(unserved_entries(s, 50));
  CHECK(choose_source(s, 60) == 1u);  // 2 still cannot serve 60..79
  s[0].busy = true;
  CHECK(choose_source(s, 60) == std::nullopt);
  CHECK_FALSE(unserved_entries(s, 60));  // 1 holds them, it is only busy
  CHECK_FALSE(unserved_entries(s, 100));  // nobody is ahead: nothing is missing
  CHECK_FALSE(unserved_entries({}, 0));
}

// The source's announced head only says whether to ask: it answers up to its
// newest head, which may be past it (docs/protocol.md "Following the log").
TEST_CASE("plan_batch caps the count, asks only a source ahead, not only up to its announced head") {
  CHECK(plan_batch(0, 5000, 1000)->count == 1000);
  CHECK(plan_batch(4500, 5000, 1000)->count == 1000);
  CHECK(plan_batch(4500, 5000, 1000)->from == 4500);
  CHECK(plan_batch(4999, 5000, 1000)->count == 1000);
  CHECK_FALSE(plan_batch(5000, 5000, 1000));
  CHECK_FALSE(plan_batch(6000, 5000, 1000));
}

TEST_CASE("address ranges: /24 and /48 by default, IPv4-mapped counts as IPv4, junk is empty") {
  CHECK(address_range("10.1.2.3") == "10.1.2.0/24");
  CHECK(address_range("10.1.2.250") == "10.1.2.0/24");
  CHECK(address_range("10.1.2.3", 32) == "10.1.2.3/32");
  CHECK(address_range("10.1.2.3", 20) == "10.1.0.0/20");
  CHECK(address_range("::ffff:10.1.2.3") == "10.1.2.0/24");
  CHECK(address_range("2001:db8:1:2::5") == "2001:db8:1::/48");
  CHECK(address_range("2001:db8:1:2::5", 24, 128) == "2001:db8:1:2::5/128");
  CHECK(address_range("not an ip").empty());
  CHECK(address_range("").empty());
}

TEST_CASE("choose_eviction: the longest idle, never a busy one, only past idle_after, only in range") {
  auto t0 = Clock::now();
  std::vector<InboundInfo> s{{1, "a", t0 - 50s, false},
                             {2, "a", t0 - 90s, true},   // busy: kept
                             {3, "b", t0 - 80s, false},
                             {4, "a", t0 - 5s, false}};
  CHECK(choose_eviction(s, "", t0, 10s) == std::optional<uint64_t>(3));
  CHECK(choose_eviction(s, "a", t0, 10s) == std::optional<uint64_t>(1));
  CHECK(choose_eviction(s, "a", t0, 60s) == std::nullopt);
  CHECK(choose_eviction(s, "c", t0, 0s) == std::nullopt);
  CHECK(choose_eviction({}, "", t0, 0s) == std::nullopt);
}
