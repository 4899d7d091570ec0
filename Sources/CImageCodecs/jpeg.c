// JPEG through libjpeg(-turbo), with an error manager that longjmps back instead of exit().
#include "codecs.h"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf escape;
    char *message;
} error_mgr;

static void on_error(j_common_ptr cinfo) {
    error_mgr *err = (error_mgr *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    snprintf(err->message, 256, "libjpeg: %s", text);
    longjmp(err->escape, 1);
}

// Corrupt-data warnings (e.g. premature end of data) become errors: a truncated file must not
// decode into a half-grey image silently.
static void on_warning(j_common_ptr cinfo, int level) {
    if (level < 0) on_error(cinfo);
}

int kn_decode_jpeg(const uint8_t *data, size_t size, int64_t max_pixels, kn_image *out) {
    struct jpeg_decompress_struct cinfo;
    error_mgr err;
    memset(out, 0, sizeof(*out));
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = on_error;
    err.base.emit_message = on_warning;
    err.message = out->error;
    uint8_t *volatile pixels = NULL;
    if (setjmp(err.escape)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, (unsigned char *)data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(out->error, sizeof(out->error), "CMYK JPEGs are not supported (convert to RGB)");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (kn_image_size_refused(cinfo.image_width, cinfo.image_height, max_pixels, out)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const int w = cinfo.output_width, h = cinfo.output_height;
    pixels = malloc((size_t)w * h * 3);
    if (!pixels) {
        snprintf(out->error, sizeof(out->error), "cannot allocate %zu bytes for a %dx%d image", (size_t)w * h * 3, w, h);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->width = w;
    out->height = h;
    out->rgb = pixels;
    return 0;
}

int kn_encode_jpeg(const char *path, const uint8_t *rgb, int width, int height, int quality, char *error) {
    struct jpeg_compress_struct cinfo;
    error_mgr err;
    FILE *volatile file = fopen(path, "wb");
    if (!file) { snprintf(error, 256, "cannot open %s for writing", path); return -1; }
    cinfo.err = jpeg_std_error(&err.base);
    err.base.error_exit = on_error;
    err.message = error;
    if (setjmp(err.escape)) {
        jpeg_destroy_compress(&cinfo);
        fclose(file);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, file);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    fclose(file);
    return 0;
}

void kn_image_free(kn_image *image) {
    free(image->rgb);
    image->rgb = NULL;
}
