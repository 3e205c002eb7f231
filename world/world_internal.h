/* Private helpers shared by the world library's files; not a public API. */
#ifndef DPO_WORLD_INTERNAL_H
#define DPO_WORLD_INTERNAL_H

/* Whether (u, v) in box coordinates ([-1, 1] across the object's box, v
 * down) lies inside the shape: the renderer and the judge's templates use
 * the same test, so a clean render matches its template exactly. */
int world_shape_contains(int shape, float u, float v);

#endif
