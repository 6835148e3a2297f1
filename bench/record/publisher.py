"""Publishes what a G1 would during one recorded episode, and counts every message.

3 cameras as JPEG ``CompressedImage`` (or raw ``Image``) at --camera-hz and
``joint_states`` at --joint-hz, between an episode START and END. The frames
are pre-encoded (a moving gradient, 8 distinct frames per camera) so the
publisher's own CPU stays small. Prints one JSON line with the counts.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import rclpy
from sensor_msgs.msg import CompressedImage, Image, JointState
from sop_msgs.msg import EpisodeEvent

from sop_ros.core import topics
from sop_ros.nodes.common import COMMAND_QOS, SENSOR_QOS

JOINTS = [f"idx2{i}_arm_l_joint{i}" for i in range(1, 8)] + [f"idx6{i}_arm_r_joint{i}" for i in range(1, 8)]


def frames(width: int, height: int, seed: int, compressed: bool) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(8):
        base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        image = (base + 30 * k + rng.normal(0, 12, (height, width, 3))).clip(0, 255).astype(np.uint8)
        cv2.circle(image, (40 + 60 * k, height // 2), 40, (255, 80, 20), -1)
        if compressed:
            out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        else:
            out.append(image.tobytes())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--joint-hz", type=float, default=100.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--raw", action="store_true", help="raw Image instead of JPEG")
    parser.add_argument("--cameras", default="head,hand_left,hand_right")
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("record_bench_publisher")
    cameras = args.cameras.split(",")
    compressed = not args.raw
    msg_type = CompressedImage if compressed else Image
    image_pubs = {
        c: node.create_publisher(msg_type, topics.camera_topic(c, compressed=compressed), SENSOR_QOS)
        for c in cameras
    }
    joints_pub = node.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)
    events = node.create_publisher(EpisodeEvent, topics.EPISODE_EVENTS, COMMAND_QOS)
    encoded = {c: frames(args.width, args.height, i, compressed) for i, c in enumerate(cameras)}
    counts = {topics.camera_topic(c, compressed=compressed): 0 for c in cameras}
    counts[topics.JOINT_STATES] = 0
    raw_bytes = 0

    # Let the recorder discover us before the episode starts.
    deadline = time.monotonic() + 10.0
    while events.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)

    def event(kind: int) -> None:
        msg = EpisodeEvent(
            kind=kind,
            episode_id="bench-episode",
            robot_id="bench",
            task="grocery_restock",
            instruction="bench",
            outcome=EpisodeEvent.OUTCOME_SUCCESS,
            policy_version="v0000",
        )
        msg.header.stamp = node.get_clock().now().to_msg()
        events.publish(msg)

    event(EpisodeEvent.START)
    time.sleep(0.5)  # the recorder opens its bag
    start = time.monotonic()
    next_cam = next_joint = start
    frame = 0
    while (now := time.monotonic()) - start < args.duration_s:
        stamp = node.get_clock().now().to_msg()
        if now >= next_joint:
            msg = JointState(name=JOINTS, position=np.sin(np.arange(14) + now).tolist())
            msg.header.stamp = stamp
            joints_pub.publish(msg)
            counts[topics.JOINT_STATES] += 1
            next_joint += 1.0 / args.joint_hz
        if now >= next_cam:
            for c in cameras:
                data = encoded[c][frame % 8]
                if compressed:
                    msg = CompressedImage(format="jpeg", data=data)
                else:
                    msg = Image(
                        height=args.height, width=args.width, encoding="rgb8", step=args.width * 3, data=data
                    )
                msg.header.stamp = stamp
                image_pubs[c].publish(msg)
                counts[topics.camera_topic(c, compressed=compressed)] += 1
            raw_bytes += len(cameras) * args.width * args.height * 3
            frame += 1
            next_cam += 1.0 / args.camera_hz
        time.sleep(max(0.0, min(next_cam, next_joint) - time.monotonic()))
    time.sleep(0.5)  # let the last messages arrive before END
    event(EpisodeEvent.END)
    time.sleep(1.0)
    print(json.dumps({"published": counts, "raw_image_bytes": raw_bytes, "duration_s": args.duration_s}))
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
