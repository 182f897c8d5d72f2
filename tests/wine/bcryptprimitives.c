/* Test-only: Rust's std for windows-gnu imports bcryptprimitives.dll!ProcessPrng (Windows 10+),
 * which Wine 8.0 lacks. Wine has RtlGenRandom (advapi32!SystemFunction036), which is what
 * ProcessPrng provides. scripts/wine-run.sh puts this DLL in the private Wine prefix; nothing
 * Keyport ships contains it (real Windows has ProcessPrng). */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    return RtlGenRandom(data, (ULONG)len);
}
