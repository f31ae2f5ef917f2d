// Shared output of commands that end at a signed head (exec, replay).
#pragma once

#include "core/head.h"

namespace swarmlite::cli {

// "head: size=… log_root=… state_root=… page_count=… time_ms=…" (defined in cmd_exec.cpp).
void print_head(const Head& head);

}  // namespace swarmlite::cli
