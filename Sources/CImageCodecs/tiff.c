// TIFF through libtiff's RGBA interface; library errors are captured per thread instead of
// printed to stderr.
#include "codecs.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

static _Thread_local char tiff_message[256];

static void on_tiff_error(const char *module, const char *fmt, va_list ap) {
    char text[200];
    vsnprintf(text, sizeof(text), fmt, ap);
    snprintf(tiff_message, sizeof(tiff_message), "libtiff: %s%s%s", module ? module : "", module ? ": " : "", text);
}

static void on_tiff_warning(const char *module, const char *fmt, va_list ap) { (void)module; (void)fmt; (void)ap; }

int kn_image_size_refused(uint64_t width, uint64_t height, int64_t max_pixels, kn_image *out) {
    if (width == 0 || height == 0) {
        snprintf(out->error, sizeof(out->error), "empty image (%llux%llu)", (unsigned long long)width, (unsigned long long)height);
        return 1;
    }
    if (width > (uint64_t)max_pixels || height > (uint64_t)max_pixels || width * height > (uint64_t)max_pixels) {
        snprintf(out->error, sizeof(out->error), "declares %llux%llu pixels, over the limit of %lld (KILN_MAX_IMAGE_PIXELS raises it)",
                 (unsigned long long)width, (unsigned long long)height, (long long)max_pixels);
        return 1;
    }
    return 0;
}

int kn_decode_tiff(const char *path, int64_t max_pixels, kn_image *out) {
    memset(out, 0, sizeof(*out));
    TIFFSetErrorHandler(on_tiff_error);
    TIFFSetWarningHandler(on_tiff_warning);
    tiff_message[0] = 0;
    TIFF *tif = TIFFOpen(path, "r");
    if (!tif) {
        snprintf(out->error, sizeof(out->error), "%s", tiff_message[0] ? tiff_message : "libtiff: cannot open");
        return -1;
    }
    uint32_t w = 0, h = 0;
    TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
    if (kn_image_size_refused(w, h, max_pixels, out)) {
        TIFFClose(tif);
        return -1;
    }
    uint32_t *rgba = _TIFFmalloc((tmsize_t)w * h * sizeof(uint32_t));
    uint8_t *pixels = malloc((size_t)w * h * 3);
    if (!rgba || !pixels) {
        snprintf(out->error, sizeof(out->error), "cannot allocate memory for a %ux%u image", w, h);
        if (rgba) _TIFFfree(rgba);
        free(pixels);
        TIFFClose(tif);
        return -1;
    }
    if (!TIFFReadRGBAImageOriented(tif, w, h, rgba, ORIENTATION_TOPLEFT, 0)) {
        snprintf(out->error, sizeof(out->error), "%s", tiff_message[0] ? tiff_message : "libtiff: cannot decode");
        _TIFFfree(rgba);
        free(pixels);
        TIFFClose(tif);
        return -1;
    }
    for (size_t i = 0; i < (size_t)w * h; i++) {
        pixels[3 * i] = TIFFGetR(rgba[i]);
        pixels[3 * i + 1] = TIFFGetG(rgba[i]);
        pixels[3 * i + 2] = TIFFGetB(rgba[i]);
    }
    _TIFFfree(rgba);
    TIFFClose(tif);
    out->width = (int)w;
    out->height = (int)h;
    out->rgb = pixels;
    return 0;
}

int kn_encode_tiff(const char *path, const uint8_t *rgb, int width, int height, char *error) {
    TIFFSetErrorHandler(on_tiff_error);
    TIFF *tif = TIFFOpen(path, "w");
    if (!tif) { snprintf(error, 256, "libtiff: cannot create %s", path); return -1; }
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, width);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, height);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, height);
    for (int y = 0; y < height; y++) {
        if (TIFFWriteScanline(tif, (void *)(rgb + (size_t)y * width * 3), y, 0) < 0) {
            snprintf(error, 256, "libtiff: write failed");
            TIFFClose(tif);
            return -1;
        }
    }
    TIFFClose(tif);
    return 0;
}
