#version 330 core
// Evaluate one Gaussian at this pixel centre; premultiplied output for back-to-front "over" blending.

flat in vec3 v_color;
flat in float v_opacity;
flat in vec3 v_conic;
in vec2 v_offset;

out vec4 frag_color;

void main() {
    vec2 d = v_offset;
    float sigma = 0.5 * (v_conic.x * d.x * d.x + v_conic.z * d.y * d.y) + v_conic.y * d.x * d.y;
    if (sigma < 0.0) discard;
    float alpha = min(0.999, v_opacity * exp(-sigma));
    if (alpha < 1.0 / 255.0) discard;
    frag_color = vec4(v_color * alpha, alpha);
}
