"""The simulated lab: what ``sop demo``, ``sop experiment`` and the benches share.

Expert demonstrations recorded as bags (:mod:`.demonstrations`, :mod:`.sim_bags`),
the base policy trained offline from them or packaged (:mod:`.base_policy`,
``assets/``), closed-loop evaluation of a policy on held-out layouts
(:mod:`.evaluate`) and the statistics every success rate is reported with
(:mod:`.stats`). It may use the simulator, storage and the learner; no ROS and
no Zenoh, so it runs where neither is installed.
"""
