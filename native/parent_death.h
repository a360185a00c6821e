// The parent-death signal: prctl(PR_SET_PDEATHSIG), so a rank cannot outlive
// the runner even when the runner is SIGKILLed and runs no cleanup.
#pragma once

#include <napi.h>

namespace multirank {

// setParentDeathSignal(signal: number, expectedParentPid: number): boolean.
// Arms the signal, then returns whether getppid() still equals
// expectedParentPid (pass 0 to skip the check). false means the parent died
// before the signal was armed, which prctl cannot report by itself.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info);

// getParentDeathSignal(): number, 0 when none is armed.
Napi::Value GetParentDeathSignal(const Napi::CallbackInfo& info);

}  // namespace multirank
