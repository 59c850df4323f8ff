/* flowprep/_tvl1.c's kernel without Python, for building it for another target
 * (tests/test_native_tvl1.py compiles this for aarch64 and runs it under
 * qemu-aarch64, then compares the flow with the x86-64 extension's, bit for bit).
 *
 *   tvl1_standalone H W PREV NEXT OUT tau lambda theta nscales warps epsilon
 *                   inner outer scale_step gamma median
 *
 * PREV, NEXT: H*W uint8 grey values (raw); OUT: H*W*2 float32 (little-endian),
 * the flow as flowprep._tvl1.compute writes it. Exit 0, or 2 with a message.
 */
#define FLOWPREP_NO_PYTHON 1
#include "../flowprep/_tvl1.c"

#include <stdio.h>

static int read_all(const char *path, void *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    return got == n ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 17) {
        fprintf(stderr, "usage: %s H W PREV NEXT OUT tau lambda theta nscales warps epsilon inner outer "
                        "scale_step gamma median\n", argv[0]);
        return 2;
    }
    int H = atoi(argv[1]), W = atoi(argv[2]);
    if (H < 1 || W < 1 || H > 65535 || W > 65535) { fprintf(stderr, "bad size\n"); return 2; }
    size_t n = (size_t)H * W;
    unsigned char *raw = malloc(2 * n);
    float *out = malloc(2 * n * sizeof(float));
    if (!raw || !out) { fprintf(stderr, "out of memory\n"); return 2; }
    if (read_all(argv[3], raw, n) || read_all(argv[4], raw + n, n)) {
        fprintf(stderr, "cannot read %zu bytes from %s / %s\n", n, argv[3], argv[4]);
        return 2;
    }
    Params p;
    params_make(&p, atof(argv[6]), atof(argv[7]), atof(argv[8]), atoi(argv[9]), atoi(argv[10]),
                atof(argv[11]), atoi(argv[12]), atoi(argv[13]), atof(argv[14]), atof(argv[15]),
                atoi(argv[16]));
    init_cubic_tab();
    int levels = 0;
    if (tvl1_run(raw, raw + n, 1, H, W, &p, out, NULL, &levels) != 0) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    FILE *f = fopen(argv[5], "wb");
    if (!f || fwrite(out, sizeof(float), 2 * n, f) != 2 * n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", argv[5]);
        return 2;
    }
    return 0;
}
