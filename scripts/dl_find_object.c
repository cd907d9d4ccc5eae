/*
 * _dl_find_object for the copier's static musl link (scripts/cross-toolchain.sh puts it into the
 * libunwind.a the Rust standard library asks for, beside GCC's unwinder, libgcc_eh).
 *
 * Why it exists: the GNU cross compilers Debian ships build libgcc_eh against glibc, and since
 * GCC 12 its _Unwind_Find_FDE calls glibc 2.35's _dl_find_object for a program counter that no
 * registered frame table covers. musl has no such function, so the link fails without one.
 *
 * Why "not found" is the whole answer: a static executable's start file (crtbeginT.o) registers
 * the program's .eh_frame with __register_frame_info, and _Unwind_Find_FDE searches that
 * registry first. Every frame of the copier is in it, so this is only reached for a PC outside
 * the program, which has no unwind information anyway. dfget-copier/tests/platforms.rs holds a
 * panic on every platform to unwinding (exit 101, not an abort).
 */
struct dl_find_object;

int _dl_find_object(void *pc, struct dl_find_object *result) {
  (void)pc;
  (void)result;
  return -1;
}
