/* Decode only a rectangle of a JPEG into a caller's buffer (libjpeg-turbo).
 *
 * decode_crop(data, x, y, w, h, out, channels=1) -> None
 *     data: the JPEG bytes (any buffer).
 *     x, y, w, h: the rectangle in image pixels; it must lie inside the image.
 *     out: a writable C-contiguous buffer of exactly h*w*channels bytes (a numpy
 *          uint8 (h, w) or (h, w, 3) array, or one plane of a C-contiguous stack).
 *     channels: 1 -> grey (JCS_GRAYSCALE); 3 -> RGB order (JCS_RGB).
 * Raises ValueError with libjpeg's message for data that is not a decodable JPEG,
 * and for any libjpeg warning (corrupt data, premature end): a stored image is
 * either intact or an error, never a silently patched image.
 *
 * How: jpeg_crop_scanline() limits the IDCT (and colour conversion) to the
 * iMCU columns that cover the box, jpeg_skip_scanlines() entropy-decodes the
 * rows above it without the IDCT, and decoding stops after its last row. The
 * pixels are those of a whole decode with the same library and settings
 * (JDCT_ISLOW, fancy upsampling): a grey pixel depends only on its own 8x8
 * block; a colour pixel's chroma is upsampled from its neighbours, which
 * libjpeg replaces by the edge at the edges of what it decodes, so for
 * colour a margin of MARGIN pixels around the box is decoded and dropped.
 * Tests compare it with cv2.imdecode followed by the crop, on real stored
 * frames and planes.
 *
 * The GIL is released while libjpeg runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

#define BATCH 16
#define MARGIN 2 /* colour: decoded around the box, then dropped */

#if JPEG_LIB_VERSION < 62
#error "libjpeg-turbo with jpeg_crop_scanline (1.5 or newer) is needed"
#endif

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} crop_error_mgr;

static void crop_error_exit(j_common_ptr cinfo) {
    crop_error_mgr *err = (crop_error_mgr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void crop_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0) { /* a warning: corrupt data; make it an error */
        crop_error_mgr *err = (crop_error_mgr *)cinfo->err;
        (*cinfo->err->format_message)(cinfo, err->message);
        longjmp(err->jump, 1);
    }
}

static PyObject *decode_crop(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data, out;
    int x, y, w, h, nc = 1;
    if (!PyArg_ParseTuple(args, "y*iiiiw*|i", &data, &x, &y, &w, &h, &out, &nc))
        return NULL;
    PyObject *result = NULL;
    char msg[JMSG_LENGTH_MAX + 64] = {0};
    volatile int bad_box = 0;

    if (nc != 1 && nc != 3) {
        PyErr_SetString(PyExc_ValueError, "channels must be 1 (grey) or 3 (RGB)");
        goto done;
    }
    if (x < 0 || y < 0 || w <= 0 || h <= 0) {
        PyErr_SetString(PyExc_ValueError, "crop box must have x, y >= 0 and w, h > 0");
        goto done;
    }
    if (out.len != (Py_ssize_t)w * h * nc) {
        PyErr_Format(PyExc_ValueError, "out has %zd bytes, the crop needs %zd",
                     out.len, (Py_ssize_t)w * h * nc);
        goto done;
    }
    if (data.len <= 0) {
        PyErr_SetString(PyExc_ValueError, "empty JPEG data");
        goto done;
    }

    struct jpeg_decompress_struct cinfo;
    crop_error_mgr jerr;
    JSAMPLE *volatile line = NULL;
    volatile int failed = 0;

    Py_BEGIN_ALLOW_THREADS
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = crop_error_exit;
    jerr.pub.emit_message = crop_emit_message;
    jerr.message[0] = 0;
    if (setjmp(jerr.jump)) {
        failed = 1;
    } else {
        jpeg_create_decompress(&cinfo);
        jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
        jpeg_read_header(&cinfo, TRUE);
        cinfo.out_color_space = nc == 1 ? JCS_GRAYSCALE : JCS_RGB;
        cinfo.dct_method = JDCT_ISLOW;
        jpeg_start_decompress(&cinfo);
        const JDIMENSION W = cinfo.output_width, H = cinfo.output_height;
        if ((JDIMENSION)x + (JDIMENSION)w > W || (JDIMENSION)y + (JDIMENSION)h > H ||
            cinfo.output_components != nc) {
            snprintf(msg, sizeof msg, "crop (%d, %d, %d, %d) does not fit the %ux%u image",
                     x, y, w, h, W, H);
            bad_box = 1;
        } else {
            /* the decoded region: the box, widened by the margin (colour only) */
            const int m = nc == 1 ? 0 : MARGIN;
            const int x0 = x > m ? x - m : 0, y0 = y > m ? y - m : 0;
            const int x1 = (JDIMENSION)(x + w + m) < W ? x + w + m : (int)W;
            const int y1 = (JDIMENSION)(y + h + m) < H ? y + h + m : (int)H;
            JDIMENSION xoff = (JDIMENSION)x0, width = (JDIMENSION)(x1 - x0);
            if (width < W)
                jpeg_crop_scanline(&cinfo, &xoff, &width);  /* xoff <= x0, widened to iMCUs */
            if (y0 > 0)
                jpeg_skip_scanlines(&cinfo, (JDIMENSION)y0);
            /* up to BATCH rows a call, into a scratch buffer of the widened rows */
            const size_t stride = (size_t)width * nc;
            line = (JSAMPLE *)malloc(stride * BATCH);
            if (line == NULL) {
                snprintf(msg, sizeof msg, "out of memory");
                bad_box = 1;
            } else {
                unsigned char *dst = (unsigned char *)out.buf;
                const size_t skip = (size_t)(x - (int)xoff) * nc, row = (size_t)w * nc;
                JSAMPROW rows[BATCH];
                for (int i = 0; i < BATCH; i++) rows[i] = line + (size_t)i * stride;
                int r = y0;  /* the image row the next read returns */
                while (r < y1) {
                    int want = y1 - r < BATCH ? y1 - r : BATCH;
                    int got = (int)jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)want);
                    if (got <= 0) {
                        snprintf(msg, sizeof msg, "JPEG data ended before row %d", r);
                        bad_box = 1;
                        break;
                    }
                    for (int i = 0; i < got; i++, r++)
                        if (r >= y && r < y + h)
                            memcpy(dst + (size_t)(r - y) * row, rows[i] + skip, row);
                }
            }
        }
        jpeg_abort_decompress(&cinfo);  /* rows below the region are never decoded */
    }
    jpeg_destroy_decompress(&cinfo);
    free(line);
    Py_END_ALLOW_THREADS

    if (failed) {
        PyErr_Format(PyExc_ValueError, "not a decodable JPEG: %s", jerr.message);
    } else if (bad_box) {
        PyErr_SetString(PyExc_ValueError, msg);
    } else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_crop", decode_crop, METH_VARARGS,
     "decode_crop(data, x, y, w, h, out, channels=1) -> None: decode only the rectangle "
     "(x, y, w, h) of a JPEG, as grey (1) or RGB (3), into out (h*w*channels bytes, C order)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpegcrop",
                                    "Crop-region JPEG decoding with libjpeg-turbo.", -1, methods};

PyMODINIT_FUNC PyInit__jpegcrop(void) { return PyModule_Create(&module); }
