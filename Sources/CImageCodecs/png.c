// PNG through libpng's simplified API (errors come back in png_image.message; no longjmp needed).
#include "codecs.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>

int kn_decode_png(const uint8_t *data, size_t size, int64_t max_pixels, kn_image *out) {
    png_image image;
    memset(out, 0, sizeof(*out));
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        snprintf(out->error, sizeof(out->error), "libpng: %s", image.message);
        return -1;
    }
    if (kn_image_size_refused(image.width, image.height, max_pixels, out)) {
        png_image_free(&image);
        return -1;
    }
    image.format = PNG_FORMAT_RGB;  // palette/gray expanded; alpha composited over black
    uint8_t *pixels = malloc((size_t)image.width * image.height * 3);
    if (!pixels) {
        snprintf(out->error, sizeof(out->error), "cannot allocate memory for a %ux%u image", image.width, image.height);
        png_image_free(&image);
        return -1;
    }
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&image, &black, pixels, 0, NULL)) {
        snprintf(out->error, sizeof(out->error), "libpng: %s", image.message);
        free(pixels);
        png_image_free(&image);
        return -1;
    }
    out->width = image.width;
    out->height = image.height;
    out->rgb = pixels;
    return 0;
}

int kn_encode_png(const char *path, const uint8_t *rgb, int width, int height, char *error) {
    png_image image;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&image, path, 0, rgb, 0, NULL)) {
        snprintf(error, 256, "libpng: %s", image.message);
        return -1;
    }
    return 0;
}
