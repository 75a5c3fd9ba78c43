#version 330 core
// Pass 1 (transform feedback, one point per Gaussian in back-to-front order): EWA projection as the
// core/render contract and core/render/cpu.py do it, the SH colour, and the ellipse that covers exactly
// the pixels where opacity * exp(-sigma) >= 1/255 can hold.

uniform sampler2D splat_data;  // per Gaussian 3 + K texels, row-major 4096 wide (gl.py's _packed)
uniform mat4 view;             // world -> camera (OpenCV: x right, y down, z forward)
uniform vec3 cam_centre;       // camera position in world, for the SH view direction
uniform vec2 focal;            // fx, fy in pixels
uniform vec2 principal;        // cx, cy in pixels
uniform vec2 image_size;       // width, height in pixels
uniform int sh_coeffs;         // K = (degree + 1)^2

in uint splat_index;

out vec4 ellipse;      // projected mean (px), first half-axis of the ellipse to cover (px)
out vec4 conic_ratio;  // upper triangle of Σ2d⁻¹ (a, b, c); second half-axis length / first
out vec4 color_op;     // rgb, opacity; opacity 0 and a zero ellipse when culled

const float NEAR = 0.01;
const float FAR = 1e10;
const float EPS2D = 0.3;
const float ALPHA_MIN = 1.0 / 255.0;

vec4 fetch(int t) {
    return texelFetch(splat_data, ivec2(t & 4095, t >> 12), 0);
}

vec3 sh_color(int base, vec3 dir) {
    // gsplat's real SH basis (Sloan's fast form), then clamp_min(colour + 0.5, 0)
    vec3 c = 0.2820947917738781 * fetch(base).rgb;
    if (sh_coeffs > 1) {
        float x = dir.x, y = dir.y, z = dir.z;
        c += -0.48860251190292 * y * fetch(base + 1).rgb
           + 0.48860251190292 * z * fetch(base + 2).rgb
           - 0.48860251190292 * x * fetch(base + 3).rgb;
        if (sh_coeffs > 4) {
            float z2 = z * z, fC1 = x * x - y * y, fS1 = 2.0 * x * y;
            float fTmpB = -1.092548430592079 * z;
            c += 0.5462742152960395 * fS1 * fetch(base + 4).rgb
               + fTmpB * y * fetch(base + 5).rgb
               + (0.9461746957575601 * z2 - 0.3153915652525201) * fetch(base + 6).rgb
               + fTmpB * x * fetch(base + 7).rgb
               + 0.5462742152960395 * fC1 * fetch(base + 8).rgb;
            if (sh_coeffs > 9) {
                float fTmpC = -2.285228997322329 * z2 + 0.4570457994644658;
                float fTmpB3 = 1.445305721320277 * z;
                float fC2 = x * fC1 - y * fS1, fS2 = x * fS1 + y * fC1;
                c += -0.5900435899266435 * fS2 * fetch(base + 9).rgb
                   + fTmpB3 * fS1 * fetch(base + 10).rgb
                   + fTmpC * y * fetch(base + 11).rgb
                   + z * (1.865881662950577 * z2 - 1.119528997770346) * fetch(base + 12).rgb
                   + fTmpC * x * fetch(base + 13).rgb
                   + fTmpB3 * fC1 * fetch(base + 14).rgb
                   - 0.5900435899266435 * fC2 * fetch(base + 15).rgb;
            }
        }
    }
    return max(c + 0.5, 0.0);
}

void main() {
    ellipse = vec4(0.0);
    conic_ratio = vec4(0.0);
    color_op = vec4(0.0);
    int base = int(splat_index) * (3 + sh_coeffs);
    vec4 t0 = fetch(base), t1 = fetch(base + 1), t2 = fetch(base + 2);
    vec3 mean = t0.xyz;
    float opacity = t0.w;
    mat3 cov3 = mat3(t1.x, t1.y, t1.z,   // symmetric; the texels hold c00 c01 c02 c11 | c12 c22
                     t1.y, t1.w, t2.x,
                     t1.z, t2.x, t2.y);
    vec3 p = (view * vec4(mean, 1.0)).xyz;
    if (p.z < NEAR || p.z > FAR || opacity < ALPHA_MIN) return;

    // the perspective Jacobian at p, its x/z and y/z clamped to 1.3x the field of view (gsplat)
    vec2 lim_pos = (image_size - principal) / focal + 0.15 * image_size / focal;
    vec2 lim_neg = principal / focal + 0.15 * image_size / focal;
    vec2 t = p.z * clamp(p.xy / p.z, -lim_neg, lim_pos);
    float iz = 1.0 / p.z;
    mat3x2 j = mat3x2(focal.x * iz, 0.0,    // 2x3, column-major
                      0.0, focal.y * iz,
                      -focal.x * t.x * iz * iz, -focal.y * t.y * iz * iz);
    mat3x2 jw = j * mat3(view);
    mat2 cov2 = jw * cov3 * transpose(jw);
    float a = cov2[0][0] + EPS2D, b = cov2[0][1], c = cov2[1][1] + EPS2D;
    float det = a * c - b * b;
    if (!(det > 0.0)) return;

    // cull as the CPU backend does: the 3-sigma box, radius ceil(3 sqrt(largest eigenvalue)), misses the image
    float mid = 0.5 * (a + c);
    float lam1 = mid + sqrt(max(mid * mid - det, 0.0));
    float radius = ceil(3.0 * sqrt(lam1));
    vec2 mean2d = focal * p.xy * iz + principal;
    if (any(lessThanEqual(mean2d + radius, vec2(0.0))) || any(greaterThanEqual(mean2d - radius, image_size))) return;

    // the ellipse sigma = ln(255 opacity), axes along the eigenvectors of Σ2d, a hair larger
    float reach = sqrt(2.0 * log(opacity * 255.0)) * 1.001 + 1e-3;
    vec2 axis = abs(b) > 1e-12 * lam1 ? normalize(vec2(b, lam1 - a)) : (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0));
    ellipse = vec4(mean2d, axis * reach * sqrt(lam1));
    conic_ratio = vec4(c / det, -b / det, a / det, sqrt(det) / lam1);  // sqrt(lam2 / lam1), lam2 = det / lam1
    color_op = vec4(sh_color(base + 3, normalize(mean - cam_centre)), opacity);
}
