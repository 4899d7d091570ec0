// Separable bilinear resampling of float HWC images, antialiased when shrinking: the triangle
// filter is widened by the scale factor (as PIL and torchvision's antialias=True do).
#include "codecs.h"
#include <math.h>
#include <stdlib.h>

static void resample_axis(const float *src, float *dst, int in_len, int out_len, int lines, int stride_in_line,
                          int stride_in_pos, int stride_out_line, int stride_out_pos, int channels) {
    const double scale = (double)in_len / out_len;
    const double support = scale > 1.0 ? scale : 1.0;
    for (int o = 0; o < out_len; o++) {
        const double center = (o + 0.5) * scale;
        int lo = (int)floor(center - support), hi = (int)ceil(center + support);
        if (lo < 0) lo = 0;
        if (hi > in_len) hi = in_len;
        double weights[512];
        int count = hi - lo;
        if (count > 512) count = 512;
        double total = 0.0;
        for (int k = 0; k < count; k++) {
            double d = fabs((lo + k + 0.5 - center) / support);
            weights[k] = d < 1.0 ? 1.0 - d : 0.0;
            total += weights[k];
        }
        if (total <= 0.0) { weights[0] = 1.0; total = 1.0; count = count > 0 ? count : 1; }
        for (int line = 0; line < lines; line++)
            for (int c = 0; c < channels; c++) {
                double acc = 0.0;
                for (int k = 0; k < count; k++)
                    acc += weights[k] * src[(size_t)line * stride_in_line + (size_t)(lo + k) * stride_in_pos + c];
                dst[(size_t)line * stride_out_line + (size_t)o * stride_out_pos + c] = (float)(acc / total);
            }
    }
}

void kn_resize_bilinear(const float *src, int h, int w, int channels, float *dst, int oh, int ow) {
    float *tmp = malloc(sizeof(float) * (size_t)h * ow * channels);
    // Rows: resample along x for each of the h rows.
    resample_axis(src, tmp, w, ow, h, w * channels, channels, ow * channels, channels, channels);
    // Columns: resample along y for each of the ow columns.
    resample_axis(tmp, dst, h, oh, ow, channels, ow * channels, channels, ow * channels, channels);
    free(tmp);
}
