// Graceful pre-emption (docs/architecture.md, "Pre-emption"): SIGTERM and SIGUSR2 (what Slurm
// sends before it pre-empts or requeues a job) only raise a flag; the stages
// poll it between steps, finish the current step, checkpoint, flush and exit 0.
#pragma once

namespace dinv::signals {

// Install the handlers (idempotent).
void install_stop_handlers();
// True once SIGTERM or SIGUSR2 arrived (on this rank).
bool stop_requested();
// The signal that asked us to stop (0 if none).
int stop_signal();
// For tests.
void reset_for_tests();

}  // namespace dinv::signals
