/* Decode only a rectangle of a JPEG into a caller's buffer (libjpeg-turbo).
 *
 * decode_crop(data, x, y, w, h, out) -> None
 *     data: the JPEG bytes (any buffer); decoded to one grey channel.
 *     x, y, w, h: the rectangle in image pixels; it must lie inside the image.
 *     out: a writable C-contiguous buffer of exactly h*w bytes (e.g. a numpy
 *          uint8 (h, w) array, or one plane of a C-contiguous stack).
 * Raises ValueError with libjpeg's message for data that is not a decodable JPEG,
 * and for any libjpeg warning (corrupt data, premature end): a stored plane is
 * either intact or an error, never a silently patched image.
 *
 * How: jpeg_crop_scanline() limits the IDCT to the iMCU columns that cover
 * [x, x+w), jpeg_skip_scanlines() entropy-decodes the rows above y without the
 * IDCT, and decoding stops after row y+h-1. The pixels are those of a full
 * decode with the same library and settings (JDCT_ISLOW): each output pixel
 * of a single-component image depends only on its own 8x8 block. (Colour
 * images are left out on purpose: with chroma subsampling, fancy upsampling
 * at the crop's edges differs from a full decode.) Tests compare it with
 * cv2.imdecode followed by the crop, on real stored planes.
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
    int x, y, w, h;
    if (!PyArg_ParseTuple(args, "y*iiiiw*", &data, &x, &y, &w, &h, &out))
        return NULL;
    PyObject *result = NULL;
    char msg[JMSG_LENGTH_MAX + 64] = {0};
    volatile int bad_box = 0;

    if (x < 0 || y < 0 || w <= 0 || h <= 0) {
        PyErr_SetString(PyExc_ValueError, "crop box must have x, y >= 0 and w, h > 0");
        goto done;
    }
    if (out.len != (Py_ssize_t)w * h) {
        PyErr_Format(PyExc_ValueError, "out has %zd bytes, the crop needs %zd",
                     out.len, (Py_ssize_t)w * h);
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
        cinfo.out_color_space = JCS_GRAYSCALE;
        cinfo.dct_method = JDCT_ISLOW;
        jpeg_start_decompress(&cinfo);
        if ((JDIMENSION)x + (JDIMENSION)w > cinfo.output_width ||
            (JDIMENSION)y + (JDIMENSION)h > cinfo.output_height ||
            cinfo.output_components != 1) {
            snprintf(msg, sizeof msg, "crop (%d, %d, %d, %d) does not fit the %ux%u image",
                     x, y, w, h, cinfo.output_width, cinfo.output_height);
            bad_box = 1;
        } else {
            JDIMENSION xoff = (JDIMENSION)x, width = (JDIMENSION)w;
            if (width < cinfo.output_width)
                jpeg_crop_scanline(&cinfo, &xoff, &width);  /* xoff <= x, widened to iMCUs */
            if (y > 0)
                jpeg_skip_scanlines(&cinfo, (JDIMENSION)y);
            /* up to BATCH rows a call, into a scratch buffer of the widened rows */
            line = (JSAMPLE *)malloc((size_t)width * BATCH);
            if (line == NULL) {
                snprintf(msg, sizeof msg, "out of memory");
                bad_box = 1;
            } else {
                unsigned char *dst = (unsigned char *)out.buf;
                const size_t skip = (size_t)(x - (int)xoff), row = (size_t)w;
                JSAMPROW rows[BATCH];
                for (int i = 0; i < BATCH; i++) rows[i] = line + (size_t)i * width;
                int r = 0;
                while (r < h) {
                    int want = h - r < BATCH ? h - r : BATCH;
                    int got = (int)jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)want);
                    if (got <= 0) {
                        snprintf(msg, sizeof msg, "JPEG data ended before row %d", y + r);
                        bad_box = 1;
                        break;
                    }
                    for (int i = 0; i < got; i++)
                        memcpy(dst + (size_t)(r + i) * row, rows[i] + skip, row);
                    r += got;
                }
            }
        }
        jpeg_abort_decompress(&cinfo);  /* rows below the crop are never decoded */
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

static PyObject *lib_version(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(noargs)) {
    return PyLong_FromLong(JPEG_LIB_VERSION);
}

static PyMethodDef methods[] = {
    {"decode_crop", decode_crop, METH_VARARGS,
     "decode_crop(data, x, y, w, h, out) -> None: decode only the rectangle "
     "(x, y, w, h) of a JPEG, as grey, into out (h*w bytes, C order)."},
    {"lib_version", lib_version, METH_NOARGS, "JPEG_LIB_VERSION the module was built with."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpegcrop",
                                    "Crop-region JPEG decoding with libjpeg-turbo.", -1, methods};

PyMODINIT_FUNC PyInit__jpegcrop(void) { return PyModule_Create(&module); }
