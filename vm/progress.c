/* progress.c — the default progress printer for cr_vm_run (vm.h).
 *
 * On a terminal: one bar redrawn in place (bytes done/total, tensors,
 * throughput, ETA) at most ten times a second. Otherwise (a log file, CI):
 * a plain line every ten seconds, so logs stay short. Both end with one
 * summary line: time, bytes, peak RSS.
 */
#include "vm.h"

#include <string.h>
#include <unistd.h>

void cr_progress_printer_init(cr_progress_printer *pp, FILE *out)
{
    memset(pp, 0, sizeof *pp);
    pp->out = out ? out : stderr;
    pp->tty = isatty(fileno(pp->out));
    pp->last_print = -1e9;
}

static void human(char *buf, size_t n, double bytes)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    while (bytes >= 1024 && u < 4) { bytes /= 1024; u++; }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

void cr_progress_printer_update(cr_progress_printer *pp, const cr_vm_progress *p)
{
    char done[32], total[32], rate[32];
    if (p->phase == CR_VM_PHASE_DONE) {
        human(done, sizeof done, (double)p->bytes_done);
        if (pp->tty && pp->last_len) fprintf(pp->out, "\r%*s\r", pp->last_len, "");
        fprintf(pp->out, "done in %.2f s: %u tensors, %s written, peak RSS %.1f MiB\n",
                p->elapsed_s, p->tensors_done, done, (double)p->peak_rss_kb / 1024.0);
        fflush(pp->out);
        pp->last_len = 0;
        return;
    }
    double interval = pp->tty ? 0.1 : 10.0;
    if (p->elapsed_s - pp->last_print < interval) return;
    pp->last_print = p->elapsed_s;
    human(done, sizeof done, (double)p->bytes_done);
    human(total, sizeof total, (double)p->bytes_total);
    double bps = p->elapsed_s > 0 ? (double)p->bytes_done / p->elapsed_s : 0;
    human(rate, sizeof rate, bps);
    double frac = p->bytes_total ? (double)p->bytes_done / (double)p->bytes_total : 0;
    double eta = bps > 0 ? (double)(p->bytes_total - p->bytes_done) / bps : 0;
    const char *what = p->phase == CR_VM_PHASE_CHECK ? "hashing inputs" :
                       p->phase == CR_VM_PHASE_RUN ? "merging" : "finishing";
    if (pp->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '-';
        bar[30] = 0;
        int len = fprintf(pp->out, "\r%s [%s] %5.1f%% %s/%s  %u/%u tensors  %s/s  ETA %.0fs ",
                          what, bar, frac * 100, done, total, p->tensors_done, p->tensors_total, rate, eta);
        if (len < pp->last_len) fprintf(pp->out, "%*s", pp->last_len - len, "");
        pp->last_len = len;
    } else {
        fprintf(pp->out, "%s: %.1f%% %s/%s, %u/%u tensors, %s/s, ETA %.0f s\n",
                what, frac * 100, done, total, p->tensors_done, p->tensors_total, rate, eta);
    }
    fflush(pp->out);
}
