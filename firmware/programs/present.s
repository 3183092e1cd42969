; Presentation of one image: the golden model's Model.present (sim/network.py).
;
; The command's flags decide what learns and whether the teacher drives the C layer:
; `scale` rescales only the learning layers, `theta` decays θ only when the hidden layer
; learns, and the teacher flag below is ANDed with the command's. Values in braces come from
; the network configuration when the program is assembled.

present:
        minspk      {min_spikes}
        maxint      {intensity_max}
        intensity   {intensity_init}
again:  scale                           ; synaptic scaling of the learning layers
.if reset_rest
        reset                           ; rest state between presentations
.endif
        clear                           ; spike counters; one more presentation
        flags       input teacher count
        steps       {steps_present}     ; 350 ms with input
.if simulate_rest
        flags
        steps       {steps_rest}        ; 150 ms of rest, no input, nothing counted
.endif
        theta                           ; θ decay over the presentation and its rest
        jaer        done                ; AER input: the host applies the rule
        jspikes     done                ; enough E spikes
        jint        done                ; intensity at its maximum
        inc                             ; show the image again, one brighter
        jmp         again
done:   halt
