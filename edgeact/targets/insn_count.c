/*
 * edgeact's instruction-count plugin for QEMU user-mode (TCG plugin API version 1, QEMU 7.2).
 *
 * Why: Debian ships no TCG plugins, and wall-clock time under emulation is noisy. Counting executed guest
 * instructions between two markers gives a per-inference cost that is identical run to run.
 *
 * How: every translated block adds its instruction count to a counter with an inline op (no helper call).
 * The runner marks an inference by calling close() on two impossible descriptors (EDGEACT_MARK_START,
 * EDGEACT_MARK_END); the syscall callback sees them and appends the counter difference to the file given as
 * `out=PATH`. Only one guest thread is supported: the inline counter is shared by all vCPUs.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define EDGEACT_MARK_START (-31337)
#define EDGEACT_MARK_END (-31338)

static uint64_t insns;       /* executed guest instructions, updated inline */
static uint64_t mark_start;  /* counter value at the last start marker */
static int started;
static FILE *out;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7,
                       uint64_t a8)
{
    int32_t fd = (int32_t)(uint32_t)a1;
    if (fd == EDGEACT_MARK_START) {
        mark_start = insns;
        started = 1;
    } else if (fd == EDGEACT_MARK_END && started) {
        fprintf(out, "%" PRIu64 "\n", insns - mark_start);
        fflush(out);
        started = 0;
    }
}

static void on_exit_cb(qemu_plugin_id_t id, void *p)
{
    fprintf(out, "total %" PRIu64 "\n", insns);
    fflush(out);
    if (out != stderr) {
        fclose(out);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    out = stderr;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out = fopen(argv[i] + 4, "a");
            if (!out) {
                fprintf(stderr, "edgeact insn plugin: cannot open %s\n", argv[i] + 4);
                return -1;
            }
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit_cb, NULL);
    return 0;
}
