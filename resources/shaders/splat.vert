#version 330 core
// Pass 2: Gaussian k of the back-to-front order is triangle k, vertices 3k..3k+2: the equilateral
// triangle around its ellipse (one triangle, not a quad: software GL pays per primitive more than per
// pixel for splats this small). Its data comes from pass 1's output.

uniform sampler2D projected;  // pass 1's output, 3 texels per Gaussian, row-major 4096 wide
uniform vec2 image_size;      // width, height in pixels

flat out vec3 v_color;
flat out float v_opacity;
flat out vec3 v_conic;
out vec2 v_offset;  // pixel position minus the projected mean, in pixels

// the triangle circumscribing the unit circle, in units of the half-axes
const vec2 CORNERS[3] = vec2[3](vec2(0.0, 2.0), vec2(-1.7320508, -1.0), vec2(1.7320508, -1.0));

vec4 fetch(int t) {
    return texelFetch(projected, ivec2(t & 4095, t >> 12), 0);
}

void main() {
    int base = gl_VertexID - gl_VertexID % 3;  // 3 texels per Gaussian, 3 vertices per Gaussian
    vec4 ellipse = fetch(base), conic_ratio = fetch(base + 1), color_op = fetch(base + 2);
    vec2 corner = CORNERS[gl_VertexID % 3];
    vec2 axis1 = ellipse.zw, axis2 = conic_ratio.w * vec2(-ellipse.w, ellipse.z);
    v_offset = corner.x * axis1 + corner.y * axis2;
    vec2 pixel = ellipse.xy + v_offset;  // OpenCV pixels: y down; GL clip space: y up
    gl_Position = vec4(2.0 * pixel.x / image_size.x - 1.0, 1.0 - 2.0 * pixel.y / image_size.y, 0.0, 1.0);
    v_color = color_op.rgb;
    v_opacity = color_op.a;
    v_conic = conic_ratio.xyz;
}
